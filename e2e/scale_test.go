package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
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

	// One peer re-keys, as a node whose key was lost would: lace0 swaps
	// that peer alone (the topology is patched, not recomputed and
	// rewritten), with the same allowed IPs, and no route moves.
	routesBefore := ourRoutes(t, a)
	writes0 := peerWrites(t, a)
	old, key, err := l.RekeyFakeNode(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	mesh7, pods7 := lab.FakeAddrs(7)
	eventually(t, 10*time.Second, "lace0 swaps the re-keyed peer", func() error {
		dev, err := a.WG(ctx, "lace0")
		if err != nil {
			return err
		}
		p, ok := dev.Peers[key]
		if _, stale := dev.Peers[old]; !ok || stale {
			return fmt.Errorf("new key present %v, old key still present %v", ok, stale)
		}
		if !slices.Contains(p.AllowedIPs, netip.PrefixFrom(mesh7, 32).String()) || !slices.Contains(p.AllowedIPs, pods7.String()) {
			return fmt.Errorf("the re-keyed peer's allowed IPs are %v, want %s/32 and %s", p.AllowedIPs, mesh7, pods7)
		}
		if len(dev.Peers) != fakePeers+1 {
			return fmt.Errorf("lace0 has %d peers, want %d", len(dev.Peers), fakePeers+1)
		}
		return nil
	})
	// The old key out and the new one in; a path change of the real peer
	// may add a write or two, a rewrite of every peer would add 300.
	w := peerWrites(t, a) - writes0
	t.Logf("the re-key wrote %.0f peers to lace0", w)
	if w < 2 || w > 6 {
		t.Errorf("the re-key wrote %.0f peers to lace0, want 2 (the old key out, the new in)", w)
	}
	if after := ourRoutes(t, a); after != routesBefore {
		t.Errorf("routes changed with a key:\nbefore:\n%s\nafter:\n%s", routesBefore, after)
	}
	if err := pa.Ping(ctx, pz.IPs()[0], 1); err != nil {
		t.Errorf("after the re-key: %v", err)
	}
	if log, _ := os.ReadFile(a.LogPath); strings.Contains(string(log), "no buffer space") {
		t.Errorf("the daemon hit the netlink buffer limit:\n%s", a.LogTail(20))
	}
}

// peerWrites is the daemon's count of peers written to its WireGuard
// device.
func peerWrites(t *testing.T, n *lab.Node) float64 {
	t.Helper()
	w, err := n.Metric(context.Background(), "wirelace_wireguard_peer_writes_total")
	if err != nil {
		t.Fatal(err)
	}
	return w
}
