package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/e2e/lab"
	"github.com/wirelace/wirelace/netconf"
)

// chainedTopology: a public node, one behind a home router (cone NAT) and
// one behind a cloud NAT gateway (symmetric), each with the stand-in
// primary CNI and wirelace chained after it, plus a relay for the pairs
// that cannot go direct. Every node routes the others' node IPs through
// the mesh, as chaining after Cilium in VXLAN mode needs.
//
// With bridge, Wirelace learns nothing of the primary's ranges: each node
// announces its pods' addresses and peers check them against the Pods
// bound to it. With ptp, the primary's ranges are also in CiliumNode
// objects, as Cilium's operator writes them, and are routed as the nodes'
// pod CIDRs.
func chainedTopology(primary lab.PrimaryCNI) lab.Topology {
	args := []string{"--node-ip-routes"}
	return lab.Topology{
		CiliumNodes: primary == lab.PrimaryPTP,
		Relays:      []string{"relay1"},
		Sites:       map[string]lab.NAT{"home": lab.NATCone, "cloud": lab.NATSymmetric},
		Nodes: map[string]lab.TopoNode{
			"pub":    {Primary: primary, Args: args},
			"home1":  {Site: "home", Primary: primary, Args: args},
			"cloud1": {Site: "cloud", Primary: primary, Args: args},
		},
	}
}

// TestChained runs wirelace chained after each stand-in primary CNI
// (bridge + host-local, ptp + host-local), whose address ranges Wirelace
// does not know in advance.
func TestChained(t *testing.T) {
	for _, primary := range []lab.PrimaryCNI{lab.PrimaryBridge, lab.PrimaryPTP} {
		t.Run(string(primary), func(t *testing.T) { testChained(t, primary) })
	}
}

func testChained(t *testing.T, primary lab.PrimaryCNI) {
	ctx := context.Background()
	l := newLab(t)
	b, err := l.Build(ctx, chainedTopology(primary))
	if err != nil {
		t.Fatal(err)
	}
	pub, home, cloud := b.Nodes["pub"], b.Nodes["home1"], b.Nodes["cloud1"]
	nodes := []*lab.Node{pub, home, cloud}

	pods := map[*lab.Node]*lab.Pod{}
	for _, n := range nodes {
		p, err := n.AddPod(ctx, "p-"+n.Name)
		if err != nil {
			t.Fatal(err)
		}
		pods[n] = p
		checkPrimaryResult(t, p)
	}
	st := status(t, pub)
	mtu := st.MTU
	// The daemon shows what wirelace-install reported.
	if st.Install == nil || st.Install.State != netconf.InstallInstalled || !strings.HasSuffix(st.Install.Conflist, "05-primary.conflist") {
		t.Errorf("daemon's install status %+v, want installed in 05-primary.conflist", st.Install)
	}

	t.Run("prevResult intact", func(t *testing.T) {
		for _, p := range pods {
			checkPrevResultIntact(t, p)
		}
	})
	t.Run("route MTU", func(t *testing.T) {
		for _, p := range pods {
			for _, fam := range []string{"-4", "-6"} {
				out, err := p.Exec(ctx, "ip", fam, "route", "show", "default")
				if err != nil || !strings.Contains(out, fmt.Sprintf("mtu %d", mtu)) {
					t.Errorf("pod %s default route %s = %q (%v), want mtu %d", p.Name, fam, out, err, mtu)
				}
			}
		}
	})
	t.Run("pods reach each other through lace0", func(t *testing.T) {
		for _, src := range nodes {
			for _, dst := range nodes {
				if src == dst {
					continue
				}
				for _, ip := range pods[dst].IPs() {
					// The node routes the remote pod through the mesh.
					eventually(t, 20*time.Second, fmt.Sprintf("%s routes %s (pod on %s) into lace0", src.Name, ip, dst.Name), func() error {
						out, err := src.Exec(ctx, "ip", "route", "get", ip)
						if err != nil || !viaMesh(out) {
							return fmt.Errorf("ip route get %s: %q %v", ip, out, err)
						}
						return nil
					})
					eventually(t, 25*time.Second, fmt.Sprintf("pod on %s pings %s (pod on %s)", src.Name, ip, dst.Name), func() error {
						return pods[src].Ping(ctx, ip, 1)
					})
				}
			}
		}
	})
	t.Run("announced in MeshNode", func(t *testing.T) {
		for _, n := range nodes {
			mn := meshNode(t, l, n.Name)
			for _, ip := range pods[n].IPs() {
				switch {
				case primary == lab.PrimaryPTP && !coveredBy(ip, mn.Spec.PodCIDRs):
					t.Errorf("MeshNode %s podCIDRs %v (from its CiliumNode) do not cover its pod's %s", n.Name, mn.Spec.PodCIDRs, ip)
				case primary == lab.PrimaryBridge && !coveredBy(ip, mn.Spec.PodIPs):
					t.Errorf("MeshNode %s podIPs %v do not cover its pod's %s", n.Name, mn.Spec.PodIPs, ip)
				}
			}
			if primary == lab.PrimaryPTP && len(mn.Spec.PodIPs) != 0 {
				t.Errorf("MeshNode %s announces podIPs %v that its pod CIDRs already cover", n.Name, mn.Spec.PodIPs)
			}
		}
	})
	t.Run("CHECK and STATUS", func(t *testing.T) {
		for _, p := range pods {
			if err := p.Check(ctx); err != nil {
				t.Errorf("CHECK %s: %v", p.Name, err)
			}
		}
		if err := pub.CNIStatus(ctx); err != nil {
			t.Errorf("STATUS: %v", err)
		}
	})

	t.Run("GC", func(t *testing.T) {
		extra, err := pub.AddPod(ctx, "p-extra")
		if err != nil {
			t.Fatal(err)
		}
		if got := registrations(t, pub); len(got) != 2 {
			t.Fatalf("registrations on pub = %v, want 2", got)
		}
		if err := pub.CNIGC(ctx, []*lab.Pod{pods[pub]}); err != nil {
			t.Fatal(err)
		}
		got := registrations(t, pub)
		if len(got) != 1 || got[0] != pods[pub].ContainerID {
			t.Fatalf("after GC registrations on pub = %v, want only %s", got, pods[pub].ContainerID)
		}
		if err := extra.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("DEL while the daemon is down", func(t *testing.T) {
		p := pods[home]
		if err := home.Stop(); err != nil {
			t.Fatal(err)
		}
		// A STATUS now says the daemon is down, in words containerd's
		// go-cni does not mistake for "already gone".
		err := home.CNIStatus(ctx)
		if err == nil {
			t.Fatal("STATUS succeeded with the daemon down")
		}
		for _, phrase := range []string{"no such file or directory", "not found"} {
			if strings.Contains(err.Error(), phrase) {
				t.Errorf("STATUS error %q contains %q", err, phrase)
			}
		}
		if err := p.Del(ctx); err != nil {
			t.Fatalf("DEL with the daemon down: %v", err)
		}
		pending, _, err := netconf.ReadPendingReleases(home.Socket)
		if err != nil || len(pending) != 1 || pending[0].ContainerID != p.ContainerID {
			t.Fatalf("pending releases %+v (%v), want one for %s", pending, err, p.ContainerID)
		}
		if err := home.Start(chainedTopology(primary).Nodes["home1"].Args...); err != nil {
			t.Fatal(err)
		}
		if err := home.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the daemon carries out the pending release", func() error {
			if got := registrations(t, home); len(got) != 0 {
				return fmt.Errorf("registrations %v", got)
			}
			if left, _, _ := netconf.ReadPendingReleases(home.Socket); len(left) != 0 {
				return fmt.Errorf("pending releases left: %+v", left)
			}
			return nil
		})
		// The peers stop routing its address (with CiliumNodes, the whole
		// pod CIDR stays routed, as it should).
		if primary == lab.PrimaryBridge {
			ip := p.IPs()[0]
			eventually(t, 10*time.Second, "peers withdraw "+ip, func() error {
				if out, _ := pub.Exec(ctx, "ip", "route", "get", ip); viaMesh(out) {
					return fmt.Errorf("pub still routes %s: %s", ip, out)
				}
				return nil
			})
		}
		// DEL is idempotent, with the config that has no ipam section.
		if err := p.Del(ctx); err != nil {
			t.Fatalf("repeated DEL: %v", err)
		}
	})

	if primary == lab.PrimaryBridge {
		t.Run("node IPs through lace0 (VXLAN overlay)", func(t *testing.T) { testNodeIPVXLAN(t, home, cloud) })
	}

	t.Run("DEL leaves nothing", func(t *testing.T) {
		for _, p := range pods {
			if err := p.Delete(ctx); err != nil {
				t.Fatalf("delete %s: %v", p.Name, err)
			}
		}
		for _, n := range nodes {
			if got := registrations(t, n); len(got) != 0 {
				t.Errorf("%s still has registrations %v", n.Name, got)
			}
			out, _ := n.Exec(ctx, "ip", "-o", "link", "show", "type", "veth")
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				// eth0 is the node's own uplink; any other veth is a pod's.
				if f := strings.Fields(line); len(f) > 1 && !strings.HasPrefix(f[1], "eth0@") {
					t.Errorf("%s has a pod veth left: %s", n.Name, line)
				}
			}
			entries, _ := os.ReadDir(filepath.Join(n.Dir, "cni", "host-local", "primary"))
			for _, e := range entries {
				if _, err := netip.ParseAddr(e.Name()); err == nil {
					t.Errorf("%s: host-local still holds %s", n.Name, e.Name())
				}
			}
			eventually(t, 10*time.Second, n.Name+" announces no pod IPs", func() error {
				if got := meshNode(t, l, n.Name).Spec.PodIPs; len(got) != 0 {
					return fmt.Errorf("podIPs %v", got)
				}
				return nil
			})
		}
		if primary == lab.PrimaryPTP {
			return // the CiliumNodes' pod CIDRs stay routed
		}
		eventually(t, 10*time.Second, "no peer routes a primary range", func() error {
			for _, n := range nodes {
				if out := ourRoutes(t, n); strings.Contains(out, "10.99.") || strings.Contains(out, "fd99:") {
					return fmt.Errorf("%s still routes pods: %s", n.Name, out)
				}
			}
			return nil
		})
	})
}

// checkPrimaryResult: the pod's addresses are the primary's, from its
// ranges, and every interface in the result is the primary's.
func checkPrimaryResult(t *testing.T, p *lab.Pod) {
	t.Helper()
	if len(p.Result.IPs) != 2 {
		t.Fatalf("pod %s: result IPs %v, want one per family", p.Name, p.Result.IPs)
	}
	for _, ip := range p.Result.IPs {
		a, _ := netip.AddrFromSlice(ip.Address.IP)
		if !p.Node.PrimaryRanges[0].Contains(a.Unmap()) && !p.Node.PrimaryRanges[1].Contains(a) {
			t.Errorf("pod %s: address %s is not from the primary's ranges %v", p.Name, a, p.Node.PrimaryRanges)
		}
	}
	for _, iface := range p.Result.Interfaces {
		if strings.HasPrefix(iface.Name, "lace") {
			t.Errorf("pod %s: result has wirelace's interface %s in chained mode", p.Name, iface.Name)
		}
	}
}

// checkPrevResultIntact runs the wirelace plugin alone, as libcni runs it
// in the chain, with the pod's result as prevResult: what it prints must
// be that prevResult, field for field.
func checkPrevResultIntact(t *testing.T, p *lab.Pod) {
	t.Helper()
	prev, err := json.Marshal(p.Result)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"primary","type":"wirelace","socket":%q,"prevResult":%s}`, p.Node.Socket, prev)
	cmd := exec.Command("ip", "netns", "exec", p.Node.NetNS, filepath.Join(repoRootDir(), "bin", "wirelace"))
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "CNI_COMMAND=ADD", "CNI_CONTAINERID=" + p.ContainerID,
		"CNI_NETNS=" + p.NetnsPath(), "CNI_IFNAME=" + p.IfName, "CNI_PATH=" + strings.Join(p.Node.Lab().CNIPath(), ":"),
		"CNI_ARGS=K8S_POD_NAMESPACE=" + lab.PodNamespace + ";K8S_POD_NAME=" + p.Name,
	}
	cmd.Stdin = strings.NewReader(conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wirelace ADD: %v: %s %s", err, out, stderr.String())
	}
	var want, got any
	if err := json.Unmarshal(prev, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("wirelace ADD printed %q: %v", out, err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("pod %s: result changed by wirelace\n got %s\nwant %s", p.Name, out, prev)
	}
}

// testNodeIPVXLAN: a VXLAN tunnel between two nodes' InternalIPs at
// different NAT sites (Cilium's overlay stand-in) carries traffic, and it
// goes through lace0; WireGuard's own packets never do.
func testNodeIPVXLAN(t *testing.T, a, b *lab.Node) {
	ctx := context.Background()
	for i, pair := range [][2]*lab.Node{{a, b}, {b, a}} {
		n, peer := pair[0], pair[1]
		addr := fmt.Sprintf("172.31.255.%d/30", i+1)
		for _, argv := range [][]string{
			{"ip", "link", "add", "wlvx", "type", "vxlan", "id", "42", "local", n.IP.String(), "remote", peer.IP.String(), "dstport", "4789"},
			{"ip", "addr", "add", addr, "dev", "wlvx"},
			{"ip", "link", "set", "wlvx", "up"},
		} {
			if out, err := n.Exec(ctx, argv...); err != nil {
				t.Fatalf("%s: %v: %s", n.Name, err, out)
			}
		}
		// Unmarked traffic to the peer's node IP goes into the mesh;
		// WireGuard's (marked) does not.
		out, err := n.Exec(ctx, "ip", "route", "get", peer.IP.String())
		if err != nil || !viaMesh(out) {
			t.Errorf("%s: route to %s's node IP = %q (%v), want dev lace0", n.Name, peer.Name, out, err)
		}
		out, err = n.Exec(ctx, "ip", "route", "get", peer.IP.String(), "mark", "0x1ace")
		if err != nil || viaMesh(out) {
			t.Errorf("%s: marked route to %s = %q (%v), must not use lace0", n.Name, peer.Name, out, err)
		}
	}
	eventually(t, 25*time.Second, a.Name+" reaches "+b.Name+" over VXLAN", func() error {
		return a.Ping(ctx, "172.31.255.2", 1)
	})
	// While traffic flows, lace0 carries the VXLAN packets and never a
	// WireGuard one.
	capture := func(filter string) string {
		out, _ := a.Exec(ctx, "sh", "-c", "timeout 3 tcpdump -l -n -i lace0 -c 1 '"+filter+"' 2>&1; true")
		return out
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Exec(ctx, "ping", "-q", "-c", "30", "-i", "0.1", "172.31.255.2")
	}()
	vx := capture("udp port 4789")
	wg := capture("udp port 51820")
	<-done
	if !strings.Contains(vx, "1 packet captured") {
		t.Errorf("no VXLAN packet seen on lace0: %s", vx)
	}
	if !strings.Contains(wg, "0 packets captured") {
		t.Errorf("WireGuard's own packets entered lace0: %s", wg)
	}
}

// registrations lists the container IDs registered with n's daemon.
func registrations(t *testing.T, n *lab.Node) []string {
	t.Helper()
	list, err := netconfClient(n).Registrations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range list.Registrations {
		out = append(out, r.ContainerID)
	}
	return out
}

func meshNode(t *testing.T, l *lab.Lab, name string) *v1alpha1.MeshNode {
	t.Helper()
	u, err := l.Dynamic.Resource(v1alpha1.MeshNodeResource).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(u.Object)
	var mn v1alpha1.MeshNode
	if err := json.Unmarshal(b, &mn); err != nil {
		t.Fatal(err)
	}
	return &mn
}

func coveredBy(ip string, prefixes []string) bool {
	a := netip.MustParseAddr(ip)
	for _, s := range prefixes {
		if p, err := netip.ParsePrefix(s); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

// viaMesh reports whether `ip route get|show` output sends through lace0
// itself: a pod's host veth is named lace + 11 hex digits, which may begin
// with 0, so a substring test would mistake it for the mesh.
func viaMesh(ipRouteOutput string) bool {
	f := strings.Fields(ipRouteOutput)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "dev" && f[i+1] == "lace0" {
			return true
		}
	}
	return false
}
