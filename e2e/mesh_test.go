package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wirelace/wirelace/e2e/lab"
	"github.com/wirelace/wirelace/netconf"
)

func status(t *testing.T, n *lab.Node) netconf.Status {
	t.Helper()
	s, err := n.Status(context.Background())
	if err != nil {
		t.Fatalf("status of %s: %v", n.Name, err)
	}
	return s
}

// TestMeshThreeNodes: every node reaches every other node's mesh IPs (both
// families), and the traffic provably went through WireGuard: `wg show`
// reports a handshake with each peer and counters that rise with the pings.
func TestMeshThreeNodes(t *testing.T) {
	l := newLab(t)
	nodes := startNodes(t, l, "n1", "n2", "n3")
	ctx := context.Background()

	st := map[string]netconf.Status{}
	for _, n := range nodes {
		st[n.Name] = status(t, n)
		if len(st[n.Name].MeshIPs) != 2 {
			t.Fatalf("%s mesh IPs %v, want one IPv4 and one IPv6", n.Name, st[n.Name].MeshIPs)
		}
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			for _, ip := range atLeast(t, 2, b.Name+"'s mesh IPs (one per family)", st[b.Name].MeshIPs) {
				eventually(t, 10*time.Second, fmt.Sprintf("%s ping %s (%s)", a.Name, b.Name, ip), func() error {
					return a.Ping(ctx, ip, 1)
				})
			}
		}
	}

	before := map[string]lab.WGDevice{}
	for _, n := range nodes {
		d, err := n.WG(ctx, "lace0")
		if err != nil {
			t.Fatal(err)
		}
		if d.PublicKey != st[n.Name].PublicKey {
			t.Fatalf("%s: wg reports key %s, daemon %s", n.Name, d.PublicKey, st[n.Name].PublicKey)
		}
		if len(d.Peers) != 2 {
			t.Fatalf("%s has %d WireGuard peers, want 2", n.Name, len(d.Peers))
		}
		for _, o := range nodes {
			if o == n {
				continue
			}
			p, ok := d.Peers[st[o.Name].PublicKey]
			if !ok {
				t.Fatalf("%s has no peer for %s", n.Name, o.Name)
			}
			if p.LastHandshake.IsZero() || p.RxBytes == 0 || p.TxBytes == 0 {
				t.Fatalf("%s→%s: no handshake or no traffic: %+v", n.Name, o.Name, p)
			}
		}
		before[n.Name] = d
	}
	// More pings must move the counters: the pings travel through lace0.
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				if err := a.Ping(ctx, st[b.Name].MeshIPs[0], 5); err != nil {
					t.Fatalf("%s ping %s: %v", a.Name, b.Name, err)
				}
			}
		}
	}
	for _, n := range nodes {
		after, err := n.WG(ctx, "lace0")
		if err != nil {
			t.Fatal(err)
		}
		for k, p := range after.Peers {
			b := before[n.Name].Peers[k]
			if p.RxBytes <= b.RxBytes || p.TxBytes <= b.TxBytes {
				t.Fatalf("%s: counters for peer %s did not rise: before %+v after %+v", n.Name, k, b, p)
			}
		}
	}
}
