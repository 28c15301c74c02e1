package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadTopology(t *testing.T) {
	good, err := LoadTopology("../testdata/nat-matrix.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(good.Relays) != 2 || good.Sites["clouda"] != NATSymmetric || good.Nodes["f1"].PortForward != 51820 ||
		good.Nodes["a2"].Annotations["wirelace.io/listen-port"] != "51821" {
		t.Fatalf("parsed %+v", good)
	}
	dir := t.TempDir()
	for text, want := range map[string]string{
		"sites: {x: fullcone}\n":                          `NAT "fullcone"`,
		"nodes: {n: {site: nowhere}}\n":                   `unknown site "nowhere"`,
		"nodes: {n: {portForward: 1}}\n":                  "port-forward but no site",
		"relay: [r]\n":                                    `unknown field "relay"`,
		"sites: {h: cone}\nnodes: {n: {site: h, x: 1}}\n": `unknown field "x"`,
	} {
		p := filepath.Join(dir, "t.yaml")
		os.WriteFile(p, []byte(text), 0o644)
		if _, err := LoadTopology(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want error containing %s", text, err, want)
		}
	}
}
