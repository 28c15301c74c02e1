package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]string{"--node-name", "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Interface != "lace0" || c.ListenPort != 51820 || c.HeartbeatInterval.Duration != 10*time.Second {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	pools, err := c.MeshPools()
	if err != nil || len(pools) != 2 {
		t.Fatalf("pools %v, %v", pools, err)
	}
	// The metrics name peers and count their traffic without
	// authentication: only the node itself may read them unless an
	// operator says otherwise.
	if host, _, err := net.SplitHostPort(c.MetricsListen); err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("metrics listen on %q by default, want the loopback", c.MetricsListen)
	}
	if c.NodeIPRoutes || c.RouteTable != 119 || c.FwMark != 0x1ace {
		t.Errorf("node-IP routing defaults: %v table %d mark %#x", c.NodeIPRoutes, c.RouteTable, c.FwMark)
	}
}

func TestFileThenFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wirelaced.yaml")
	file := "nodeName: from-file\nlistenPort: 4000\nmeshCIDRs: [10.1.0.0/24]\nheartbeatInterval: 3s\nrelays: [a:1, b:2]\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]string{"--listen-port", "5000", "--relays", "c:3", "--config", path})
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "from-file" {
		t.Errorf("node name %q, want from-file", c.NodeName)
	}
	if c.ListenPort != 5000 {
		t.Errorf("listen port %d, want the flag's 5000", c.ListenPort)
	}
	if len(c.MeshCIDRs) != 1 || c.MeshCIDRs[0] != "10.1.0.0/24" {
		t.Errorf("mesh CIDRs %v, want the file's", c.MeshCIDRs)
	}
	if len(c.Relays) != 1 || c.Relays[0] != "c:3" {
		t.Errorf("relays %v, want the flag's [c:3] over the file's", c.Relays)
	}
	if c.HeartbeatInterval.Duration != 3*time.Second {
		t.Errorf("heartbeat %v, want 3s", c.HeartbeatInterval)
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("nodeNmae: x\n"), 0o600)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--node-name", "n", "--mesh-cidrs", "10.0.0.0/33"}, "not a valid CIDR"},
		{[]string{"--node-name", "n", "--mesh-cidrs", "10.0.0.1/16"}, "host bits set; did you mean 10.0.0.0/16"},
		{[]string{"--node-name", "n", "--mesh-cidrs", "10.0.0.0/16,10.1.0.0/16"}, "at most one per address family"},
		{[]string{"--node-name", "n", "--mesh-cidrs", "10.0.0.0/30"}, "too small"},
		{[]string{"--node-name", "n", "--mesh-cidrs", ""}, "mesh CIDRs are empty"},
		{[]string{"--node-name", "n", "--listen-port", "70000"}, "listen port 70000"},
		{[]string{"--node-name", "n", "--mtu", "100"}, "mtu 100"},
		{[]string{"--node-name", "n", "--interface", "a-very-long-interface"}, "1 to 15 characters"},
		{[]string{"--node-name", "n", "--endpoints", "1.2.3.4"}, "not IP:port"},
		{[]string{"--node-name", "n", "--log-level", "loud"}, "log level"},
		{[]string{"--node-name", "n", "--config", typo}, "unknown field \"nodeNmae\""},
		{[]string{"--node-name", "n", "--config", filepath.Join(dir, "missing.yaml")}, "read config file"},
		{[]string{"--node-name", "n", "stray"}, "unexpected argument"},
		{[]string{"--node-name", "n", "--cluster-cidrs", "10.244.0.0/16", "--pod-cidr-size-ipv4", "8"}, "does not fit cluster CIDR"},
		{[]string{"--node-name", "n", "--cluster-cidrs", "10.244.0.1/16"}, "cluster CIDR \"10.244.0.1/16\" has host bits set"},
	}
	for _, tc := range cases {
		_, err := Parse(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", tc.args, err, tc.want)
		}
	}
}
