package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/e2e/lab"
)

// ourRoutes lists the routes wirelaced owns in a node (protocol 119).
func ourRoutes(t *testing.T, n *lab.Node) string {
	t.Helper()
	out4, err := n.Exec(context.Background(), "ip", "route", "show", "proto", "119")
	if err != nil {
		t.Fatal(err)
	}
	out6, err := n.Exec(context.Background(), "ip", "-6", "route", "show", "proto", "119")
	if err != nil {
		t.Fatal(err)
	}
	return out4 + out6
}

// hasPeer reports whether n's device has a peer with key and routes to ips.
func hasPeer(t *testing.T, n *lab.Node, key string, ips []string) (bool, bool) {
	t.Helper()
	d, err := n.WG(context.Background(), "lace0")
	if err != nil {
		t.Fatal(err)
	}
	_, peer := d.Peers[key]
	routes := ourRoutes(t, n)
	routed := false
	for _, ip := range ips {
		if strings.Contains(routes, ip+" ") || strings.Contains(routes, ip+"/") {
			routed = true
		}
	}
	return peer, routed
}

// joinSmokeFloor bounds how long a new node may take to become reachable
// in TestNodeJoinsAndLeaves: a smoke test, not a measurement (make bench
// measures it), generous because a loaded machine running race builds may
// start a process slowly.
const joinSmokeFloor = 20 * time.Second

// TestNodeJoinsAndLeaves: a node started later is reachable from every
// existing node soon after its daemon starts (the time is logged); a node
// whose Node is deleted, or whose MeshNode is deleted, disappears from
// every peer list and route table.
func TestNodeJoinsAndLeaves(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	old := startNodes(t, l, "n1", "n2", "n3")

	n4, err := l.AddNode(ctx, "n4")
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := n4.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait only for the mesh IP (published early), then measure reachability
	// from the daemon's start.
	var s4 = waitMeshIPs(t, n4)
	for _, n := range old {
		eventually(t, joinSmokeFloor-time.Since(started), fmt.Sprintf("%s reaches n4", n.Name), func() error {
			return n.Ping(ctx, s4[0], 1)
		})
	}
	t.Logf("n4 reachable from all nodes %s after its daemon started", time.Since(started).Round(time.Millisecond))

	// Deleting a Node removes the node from every peer, even with its daemon
	// still running (it must not resurrect its MeshNode).
	st3 := status(t, old[2])
	if err := l.Core.CoreV1().Nodes().Delete(ctx, "n3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*lab.Node{old[0], old[1], n4} {
		eventually(t, 5*time.Second, n.Name+" drops n3 after its Node is deleted", func() error {
			if p, r := hasPeer(t, n, st3.PublicKey, st3.MeshIPs); p || r {
				return fmt.Errorf("peer %v routed %v", p, r)
			}
			return nil
		})
	}

	// Deleting a MeshNode (its daemon stopped, as on decommissioning) does
	// the same.
	st4 := status(t, n4)
	if err := n4.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := l.Dynamic.Resource(v1alpha1.MeshNodeResource).Delete(ctx, "n4", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range old[:2] {
		eventually(t, 5*time.Second, n.Name+" drops n4 after its MeshNode is deleted", func() error {
			if p, r := hasPeer(t, n, st4.PublicKey, st4.MeshIPs); p || r {
				return fmt.Errorf("peer %v routed %v", p, r)
			}
			return nil
		})
	}
	// The survivors still reach each other.
	st2 := status(t, old[1])
	if err := old[0].Ping(ctx, st2.MeshIPs[0], 2); err != nil {
		t.Fatalf("n1 lost n2: %v", err)
	}
	if p, _ := hasPeer(t, old[0], st2.PublicKey, st2.MeshIPs); !p {
		t.Fatal("n1 lost its peer n2")
	}
}

func waitMeshIPs(t *testing.T, n *lab.Node) []string {
	t.Helper()
	var ips []string
	eventually(t, 10*time.Second, n.Name+" has mesh IPs", func() error {
		s, err := n.Status(context.Background())
		if err != nil {
			return err
		}
		if len(s.MeshIPs) == 0 {
			return fmt.Errorf("none yet (%s)", s.Reason)
		}
		ips = s.MeshIPs
		return nil
	})
	return ips
}

// TestRestartKeepsIdentity: SIGKILL a daemon, and lace0 with its routes
// survives the gap; started again, it has the same keys and mesh IP and the
// mesh works again.
func TestRestartKeepsIdentity(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	nodes := startNodes(t, l, "n1", "n2")
	n1, n2 := nodes[0], nodes[1]
	s1, s2 := status(t, n1), status(t, n2)
	eventually(t, 10*time.Second, "n1 reaches n2", func() error { return n1.Ping(ctx, s2.MeshIPs[0], 1) })

	linkBefore, err := n1.Exec(ctx, "ip", "-o", "link", "show", "lace0")
	if err != nil {
		t.Fatal(err)
	}
	routesBefore := ourRoutes(t, n1)
	if !strings.Contains(routesBefore, s2.MeshIPs[0]) {
		t.Fatalf("n1 has no route to n2: %q", routesBefore)
	}

	if err := n1.Kill(); err != nil {
		t.Fatal(err)
	}
	// During the gap: the link and every route are still there.
	linkDuring, err := n1.Exec(ctx, "ip", "-o", "link", "show", "lace0")
	if err != nil {
		t.Fatalf("lace0 vanished with the daemon: %v", err)
	}
	if ifindex(linkDuring) != ifindex(linkBefore) {
		t.Fatalf("lace0 changed: %q → %q", linkBefore, linkDuring)
	}
	// The kernel flags routes of a link without carrier "linkdown"; they
	// stay, and still catch mesh traffic (dropped, not leaked elsewhere).
	if got := strings.ReplaceAll(ourRoutes(t, n1), " linkdown", ""); got != routesBefore {
		t.Fatalf("routes changed while the daemon was down:\nbefore %q\nduring %q", routesBefore, got)
	}

	if err := n1.Start(); err != nil {
		t.Fatal(err)
	}
	if err := n1.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	again := status(t, n1)
	if again.PublicKey != s1.PublicKey || !slices.Equal(again.MeshIPs, s1.MeshIPs) {
		t.Fatalf("identity changed across restart: %v %v → %v %v", s1.PublicKey, s1.MeshIPs, again.PublicKey, again.MeshIPs)
	}
	linkAfter, _ := n1.Exec(ctx, "ip", "-o", "link", "show", "lace0")
	if ifindex(linkAfter) != ifindex(linkBefore) {
		t.Fatalf("lace0 was recreated instead of reattached: %q → %q", linkBefore, linkAfter)
	}
	for _, ip := range atLeast(t, 2, "n2's mesh IPs", s2.MeshIPs) {
		eventually(t, 10*time.Second, "n1 reaches n2 after restart", func() error { return n1.Ping(ctx, ip, 1) })
	}
	for _, ip := range atLeast(t, 2, "n1's mesh IPs", s1.MeshIPs) {
		eventually(t, 10*time.Second, "n2 reaches n1 after restart", func() error { return n2.Ping(ctx, ip, 1) })
	}
	// The peer saw the same key: still exactly one peer on n2.
	d, err := n2.WG(ctx, "lace0")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Peers[s1.PublicKey]; !ok || len(d.Peers) != 1 {
		t.Fatalf("n2 peers after n1 restart: %v", d.Peers)
	}
}

func ifindex(ipLinkLine string) string {
	i := strings.Index(ipLinkLine, ":")
	if i < 0 {
		return ""
	}
	return ipLinkLine[:i]
}
