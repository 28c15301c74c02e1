package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wirelace/wirelace/e2e/lab"
)

// fakePeers is how many API-only nodes the scale test adds: past the 100
// at which routing used to break (the masquerade table overflowed the
// netlink buffer and the routes after it were never installed).
const fakePeers = 300

// TestScaleRouting: one real node watches 300 other nodes that exist only
// as API objects (Node with its pod CIDR, mesh-IP IPClaim, MeshNode: all a
// real node would have, so every claim is backed), then a real node joins
// last. Every peer's mesh IP and pod CIDR are routed, the masquerade table
// holds, and a pod reaches the pod on the node that joined last.
func TestScaleRouting(t *testing.T) {
	ctx := context.Background()
	l := newLab(t)
	a := startPodNodes(t, l, "a")[0]
	pa, err := a.AddPod(ctx, "pa")
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := l.AddFakeNodes(ctx, 0, fakePeers); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d nodes' objects in %s", fakePeers, time.Since(start).Round(time.Millisecond))

	z := startPodNodes(t, l, "z")[0]
	pz, err := z.AddPod(ctx, "pz")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a routes every fake peer", func() error {
		routes := ourRoutes(t, a)
		for i := range fakePeers {
			mesh, pods := lab.FakeAddrs(i)
			if !strings.Contains(routes, mesh.String()+" ") || !strings.Contains(routes, pods.String()+" ") {
				return fmt.Errorf("no route to fake peer %d (%s, %s)", i, mesh, pods)
			}
		}
		return nil
	})
	wgDev, err := a.WG(ctx, "lace0")
	if err != nil {
		t.Fatal(err)
	}
	if len(wgDev.Peers) != fakePeers+1 {
		t.Errorf("lace0 has %d peers, want %d", len(wgDev.Peers), fakePeers+1)
	}
	eventually(t, 20*time.Second, "a's pod reaches the pod on the node that joined last", func() error {
		return pa.Ping(ctx, pz.IPs()[0], 1)
	})
	if out, err := a.Exec(ctx, "nft", "list", "table", "inet", "wirelace"); err != nil || strings.Count(out, "masquerade") != 2 {
		t.Errorf("masquerade table: %v\n%s", err, out)
	}
	if log, _ := os.ReadFile(a.LogPath); strings.Contains(string(log), "no buffer space") {
		t.Errorf("the daemon hit the netlink buffer limit:\n%s", a.LogTail(20))
	}
}
