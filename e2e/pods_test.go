package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wirelace/wirelace/e2e/lab"
)

// startPodNodes starts nodes where the first takes its pod CIDRs from
// Node.spec.podCIDRs (as on clusters that allocate them) and the others
// claim blocks from the cluster CIDRs.
func startPodNodes(t *testing.T, l *lab.Lab, names ...string) []*lab.Node {
	t.Helper()
	ctx := context.Background()
	var nodes []*lab.Node
	for i, name := range names {
		var opts []lab.NodeOption
		if i == 0 {
			opts = append(opts, lab.WithPodCIDRs("10.245.7.0/24", "fd45:1ace:0:7::/64"))
		}
		n, err := l.AddNode(ctx, name, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// TestPodsAcrossNodes: 3 nodes × 2 pods; every pod reaches every other pod
// over IPv4 and IPv6, cross-node traffic goes through WireGuard, a pod
// reaches another node's mesh IP, and a pod reaches a host outside the
// cluster, which sees the node's address.
func TestPodsAcrossNodes(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	nodes := startPodNodes(t, l, "n1", "n2", "n3")
	www, err := l.AddInternetHost(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}

	var pods []*lab.Pod
	for _, n := range nodes {
		for i := 1; i <= 2; i++ {
			p, err := n.AddPod(ctx, fmt.Sprintf("%s-p%d", n.Name, i))
			if err != nil {
				t.Fatal(err)
			}
			if len(p.IPs()) != 2 {
				t.Fatalf("%s got %v, want an IPv4 and an IPv6 address", p.Name, p.IPs())
			}
			pods = append(pods, p)
		}
	}
	// The pod on n1 got its address from Node.spec.podCIDRs.
	if !strings.HasPrefix(pods[0].IPs()[0], "10.245.7.") {
		t.Fatalf("pod on n1 has %v, not from its Node.spec.podCIDRs", pods[0].IPs())
	}
	mtu, err := pods[0].Exec(ctx, "cat", "/sys/class/net/eth0/mtu")
	if err != nil {
		t.Fatal(err)
	}
	st := status(t, nodes[0])
	if strings.TrimSpace(mtu) != fmt.Sprint(st.MTU) {
		t.Fatalf("pod MTU %s, want the tunnel's %d", strings.TrimSpace(mtu), st.MTU)
	}

	before := wgTotals(t, nodes)
	for _, a := range pods {
		for _, b := range pods {
			if a == b {
				continue
			}
			for _, ip := range atLeast(t, 2, b.Name+"'s pod IPs (one per family)", b.IPs()) {
				eventually(t, 10*time.Second, fmt.Sprintf("%s ping %s (%s)", a.Name, b.Name, ip), func() error {
					return a.Ping(ctx, ip, 1)
				})
			}
		}
	}
	after := wgTotals(t, nodes)
	for _, n := range nodes {
		if after[n.Name] <= before[n.Name] {
			t.Fatalf("%s: WireGuard counters did not rise with cross-node pod traffic", n.Name)
		}
	}

	// A pod reaches another node's mesh IP.
	st2 := status(t, nodes[1])
	if err := pods[0].Ping(ctx, st2.MeshIPs[0], 2); err != nil {
		t.Fatalf("pod on n1 cannot reach n2's mesh IP: %v", err)
	}

	// Egress: the internet host sees the node's address, not the pod's.
	for _, p := range []*lab.Pod{pods[0], pods[3]} {
		var seen string
		eventually(t, 10*time.Second, p.Name+" reaches the internet host", func() error {
			var err error
			seen, err = p.WhoAmI(ctx, www)
			return err
		})
		if seen != p.Node.IP.String() {
			t.Fatalf("internet host saw %q from %s, want the node address %s (masquerade)", seen, p.Name, p.Node.IP)
		}
	}
}

// wgTotals sums rx+tx over all peers of each node's lace0.
func wgTotals(t *testing.T, nodes []*lab.Node) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, n := range nodes {
		d, err := n.WG(context.Background(), "lace0")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Peers {
			out[n.Name] += p.RxBytes + p.TxBytes
		}
	}
	return out
}

// hostVeths lists the pod veths (host side) on a node.
func hostVeths(t *testing.T, n *lab.Node) []string {
	t.Helper()
	out, err := n.Exec(context.Background(), "ip", "-o", "link", "show", "type", "veth")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], "lace") {
			names = append(names, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	return names
}

// podRoutes lists the host routes to pods on a node (routes via lace* veths).
func podRoutes(t *testing.T, n *lab.Node) []string {
	t.Helper()
	var routes []string
	for _, fam := range []string{"-4", "-6"} {
		out, err := n.Exec(context.Background(), "ip", fam, "route", "show")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			// Pod veths are "lace" + 11 hex digits (which may begin with 0);
			// the mesh interface is exactly lace0.
			if f := strings.Fields(line); len(f) > 2 && f[1] == "dev" && strings.HasPrefix(f[2], "lace") && f[2] != "lace0" {
				routes = append(routes, line)
			}
		}
	}
	return routes
}

func allocations(t *testing.T, n *lab.Node) map[string][]string {
	t.Helper()
	list, err := netconfClient(n).Allocations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, a := range list.Allocations {
		out[a.ContainerID+"/"+a.IfName] = a.IPs
	}
	return out
}

// TestConcurrentPods: 40 ADDs at once on one node give 40 distinct
// addresses; a repeated ADD returns the same address; 40 DELs leave no veth,
// route or allocation.
func TestConcurrentPods(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	n := startPodNodes(t, l, "n1")[0]

	const count = 40
	pods := newPods(t, n, "c", count)
	parallel(t, pods, func(p *lab.Pod) error { return p.Add(ctx) })

	seen := map[string]string{}
	for _, p := range pods {
		for _, ip := range p.IPs() {
			if other, dup := seen[ip]; dup {
				t.Fatalf("%s and %s both got %s", p.Name, other, ip)
			}
			seen[ip] = p.Name
		}
	}
	if len(seen) != 2*count {
		t.Fatalf("%d addresses for %d pods, want %d", len(seen), count, 2*count)
	}
	if got := len(allocations(t, n)); got != count {
		t.Fatalf("daemon holds %d allocations, want %d", got, count)
	}
	if got := len(hostVeths(t, n)); got != count {
		t.Fatalf("%d host veths, want %d", got, count)
	}

	// ADD again for the same container: same addresses.
	first := pods[0].IPs()
	if err := pods[0].Add(ctx); err != nil {
		t.Fatal(err)
	}
	if again := pods[0].IPs(); strings.Join(again, ",") != strings.Join(first, ",") {
		t.Fatalf("repeated ADD gave %v, first %v", again, first)
	}

	parallel(t, pods, func(p *lab.Pod) error { return p.Del(ctx) })
	if v := hostVeths(t, n); len(v) != 0 {
		t.Fatalf("veths left after DEL: %v", v)
	}
	if r := podRoutes(t, n); len(r) != 0 {
		t.Fatalf("routes left after DEL: %v", r)
	}
	if a := allocations(t, n); len(a) != 0 {
		t.Fatalf("allocations left after DEL: %v", a)
	}
	// DEL of what is gone succeeds.
	if err := pods[0].Del(ctx); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
}

// newPods creates count pods named prefix00, prefix01, ... on n, without
// networking yet.
func newPods(t *testing.T, n *lab.Node, prefix string, count int) []*lab.Pod {
	t.Helper()
	pods := make([]*lab.Pod, count)
	for i := range pods {
		p, err := n.NewPod(context.Background(), fmt.Sprintf("%s%02d", prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		pods[i] = p
	}
	return pods
}

func parallel(t *testing.T, pods []*lab.Pod, f func(*lab.Pod) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(pods))
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(p)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
