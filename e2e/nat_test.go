package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/wirelace/wirelace/daemon/config"
	"github.com/wirelace/wirelace/e2e/lab"
	"github.com/wirelace/wirelace/netconf"
)

// natLab is a mixed topology: nodes with public addresses, nodes behind
// home-router (cone) NATs, behind cloud (symmetric) NATs, behind a router
// that blocks UDP, and behind one with a port-forward; two relays, each
// also a STUN server.
type natLab struct {
	l     *lab.Lab
	sites map[string]*lab.Site
	nodes map[string]*lab.Node
}

func newNATLab(t *testing.T) *natLab {
	t.Helper()
	topo, err := lab.LoadTopology(filepath.Join(repoRootDir(), "e2e", "testdata", "nat-matrix.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	l := newLab(t)
	b, err := l.Build(context.Background(), topo)
	if err != nil {
		t.Fatal(err)
	}
	return &natLab{l: l, sites: b.Sites, nodes: b.Nodes}
}

// peerStatus returns what a's daemon says of its peer b, read with
// `wirelacectl status -o json` as an operator's script would.
func peerStatus(ctx context.Context, a, b *lab.Node) (netconf.PeerStatus, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(repoRootDir(), "bin", "wirelacectl"),
		"--socket", a.Socket, "status", "-o", "json").Output()
	if err != nil {
		return netconf.PeerStatus{}, fmt.Errorf("wirelacectl on %s: %w", a.Name, err)
	}
	var s netconf.Status
	if err := json.Unmarshal(out, &s); err != nil {
		return netconf.PeerStatus{}, fmt.Errorf("wirelacectl output: %w", err)
	}
	for _, p := range s.Peers {
		if p.Node == b.Name {
			return p, nil
		}
	}
	return netconf.PeerStatus{}, fmt.Errorf("%s has no peer %s", a.Name, b.Name)
}

// expectPath waits until both a and b report path want for each other and
// their mesh IPs reach each other, all within the given time, and returns
// a's view. (A first WireGuard handshake sent before any path worked is
// retried by WireGuard only after 5 s, so reachability may trail the path.)
func expectPath(t *testing.T, a, b *lab.Node, want string, within time.Duration) netconf.PeerStatus {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	var ps netconf.PeerStatus
	eventually(t, within, fmt.Sprintf("%s↔%s on path %s", a.Name, b.Name, want), func() error {
		for _, pair := range [][2]*lab.Node{{a, b}, {b, a}} {
			p, err := peerStatus(ctx, pair[0], pair[1])
			if err != nil {
				return err
			}
			if p.Path != want {
				return fmt.Errorf("%s says %s is on %q (%s)", pair[0].Name, pair[1].Name, p.Path, p.PathReason)
			}
			if pair[0] == a {
				ps = p
			}
		}
		return nil
	})
	sb := status(t, b)
	sa := status(t, a)
	left := func() time.Duration { return max(within-time.Since(start), 6*time.Second) }
	eventually(t, left(), a.Name+" pings "+b.Name, func() error { return a.Ping(ctx, sb.MeshIPs[0], 1) })
	eventually(t, left(), b.Name+" pings "+a.Name, func() error { return b.Ping(ctx, sa.MeshIPs[0], 1) })
	t.Logf("%s↔%s: %s %s (%s)", a.Name, b.Name, ps.Path, ps.PathAddr, ps.PathReason)
	return ps
}

// TestNATMatrix: every pair ends up on the path its NATs allow, within 15 s,
// its mesh IPs reach each other, and the daemons report that path.
func TestNATMatrix(t *testing.T) {
	nl := newNATLab(t)
	n := nl.nodes
	const within = 15 * time.Second

	t.Run("same LAN: direct, private addresses", func(t *testing.T) {
		ps := expectPath(t, n["a1"], n["a2"], "direct", within)
		if addr, _ := netip.ParseAddrPort(ps.PathAddr); !nl.sites["homea"].LAN.Contains(addr.Addr()) {
			t.Fatalf("direct path %s is not the private address on the shared LAN %s", ps.PathAddr, nl.sites["homea"].LAN)
		}
		// a2's Node sets its port (wirelace.io/listen-port): the daemon
		// listens there, and a1 reaches it there.
		if s := status(t, n["a2"]); s.ListenPort != 51821 || !strings.HasSuffix(ps.PathAddr, ":51821") {
			t.Fatalf("a2 listens on %d and a1 reaches it at %s; its Node's annotation says 51821", s.ListenPort, ps.PathAddr)
		}
	})
	t.Run("one side public: direct", func(t *testing.T) {
		expectPath(t, n["pub"], n["a1"], "direct", within)
		expectPath(t, n["pub"], n["s1"], "direct", within)
	})
	t.Run("cone to cone: direct, hole punched", func(t *testing.T) {
		expectPath(t, n["a1"], n["b1"], "direct", within)
	})
	t.Run("cone (port-restricted) to symmetric: relay", func(t *testing.T) {
		// Linux NAT filters by address and port, so the symmetric side's
		// new port is never let in: this pair needs the relay.
		expectPath(t, n["b1"], n["s1"], "relay", within)
	})
	t.Run("symmetric to symmetric: relay", func(t *testing.T) {
		expectPath(t, n["s1"], n["s2"], "relay", within)
	})
	t.Run("UDP blocked: relay", func(t *testing.T) {
		expectPath(t, n["u1"], n["pub"], "relay", within)
		expectPath(t, n["u1"], n["a1"], "relay", within)
	})
	t.Run("port-forward (configured endpoint): direct", func(t *testing.T) {
		ps := expectPath(t, n["s1"], n["f1"], "direct", within)
		if want := netip.AddrPortFrom(nl.sites["fwd"].WAN, 51820).String(); ps.PathAddr != want {
			t.Fatalf("s1 reaches f1 at %s, want the port-forward %s", ps.PathAddr, want)
		}
	})
	t.Run("pods across direct and relayed paths", func(t *testing.T) {
		ctx := context.Background()
		pods := map[string]*lab.Pod{}
		for _, name := range []string{"pub", "a1", "b1", "s1", "s2", "u1"} {
			p, err := n[name].AddPod(ctx, "p-"+name)
			if err != nil {
				t.Fatal(err)
			}
			pods[name] = p
		}
		for _, pair := range [][2]string{{"a1", "b1"}, {"pub", "s1"}, {"s1", "s2"}, {"u1", "pub"}, {"b1", "s1"}} {
			a, b := pods[pair[0]], pods[pair[1]]
			for _, ip := range atLeast(t, 2, pair[1]+"'s pod IPs (one per family)", b.IPs()) {
				eventually(t, 10*time.Second, fmt.Sprintf("pod on %s pings pod on %s (%s)", pair[0], pair[1], ip), func() error {
					return a.Ping(ctx, ip, 1)
				})
			}
		}
	})
	t.Run("metrics", func(t *testing.T) {
		m := scrape(t, n["s1"].NetNS, 9471)
		for _, want := range []string{`wirelace_peers{path="relay"}`, `wirelace_nat_type{type="symmetric"} 1`, `wirelace_relay_connected{relay=`} {
			if !strings.Contains(m, want) {
				t.Fatalf("s1 metrics lack %s", want)
			}
		}
		// The daemon counts its own requests to the API server: it has
		// renewed its Lease and watched MeshNodes by now.
		reqs, err := lab.MetricValues(m, "wirelace_api_requests_total")
		if err != nil {
			t.Fatal(err)
		}
		if reqs["leases update"]+reqs["leases create"] == 0 || reqs["meshnodes watch"] == 0 {
			t.Fatalf("s1's API request counts lack its Lease writes or its MeshNode watch: %v", reqs)
		}
		r := scrape(t, nl.l.Relays()[0].NetNS, 9090)
		if !strings.Contains(r, "wirelace_relay_relayed_packets_total") || !strings.Contains(r, "wirelace_relay_clients") {
			t.Fatalf("relay metrics lack relayed packets / clients:\n%s", r)
		}
	})
	t.Run("NAT types are published", func(t *testing.T) {
		// a1 and a2, behind one router on ports of their own, are both
		// seen as the cone they are behind.
		for name, want := range map[string]string{"pub": "open", "a1": "cone-port-restricted", "a2": "cone-port-restricted", "s1": "symmetric", "u1": "udp-blocked"} {
			s := status(t, n[name])
			if s.NATType != want {
				t.Errorf("%s NAT type %q (%s), want %q", name, s.NATType, s.NATReason, want)
			}
		}
	})
}

// scrape fetches /metrics from 127.0.0.1:port inside a namespace.
func scrape(t *testing.T, netns string, port int) string {
	t.Helper()
	out, err := lab.Scrape(context.Background(), netns, port)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNodesSharingANATPort: two nodes behind one home router, both on the
// default port, collide there: the router keeps a port toward a destination
// for one host only and gives the other a new one, so one of them looks
// symmetric, or cone on a port that holds only toward some destinations.
// Every node that loses says why and what to do; the fix it names, a port
// of its own from its Node's annotation, makes both the cone they are
// behind, each on its own port.
func TestNodesSharingANATPort(t *testing.T) {
	ctx := context.Background()
	l := newLab(t)
	b, err := l.Build(ctx, lab.Topology{
		Relays: []string{"relay1", "relay2"}, // two STUN servers: cone needs two views
		Sites:  map[string]lab.NAT{"office": lab.NATCone},
		Nodes:  map[string]lab.TopoNode{"o1": {Site: "office"}, "o2": {Site: "office"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	wan := b.Sites["office"].WAN
	both := []*lab.Node{b.Nodes["o1"], b.Nodes["o2"]}
	const hint = "nodes behind one NAT need different listen ports"
	var told []*lab.Node
	eventually(t, 20*time.Second, "a node behind the shared port told why", func() error {
		told = nil
		for _, n := range both {
			if s := status(t, n); strings.Contains(s.NATReason, hint) {
				told = append(told, n)
			}
		}
		if len(told) == 0 {
			return errors.New("neither node says it shares its port behind the router")
		}
		return nil
	})
	for i, n := range told {
		t.Logf("%s: %s", n.Name, status(t, n).NATReason)
		port := strconv.Itoa(51821 + i)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, config.ListenPortAnnotation, port)
		if _, err := l.Core.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if err := n.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if s := status(t, n); strconv.Itoa(s.ListenPort) != port {
			t.Fatalf("%s listens on %d after its Node set %s", n.Name, s.ListenPort, port)
		}
	}
	eventually(t, 20*time.Second, "both nodes the cone they are behind, each on its own port", func() error {
		for _, n := range both {
			s := status(t, n)
			own := netip.AddrPortFrom(wan, uint16(s.ListenPort)).String()
			if s.NATType != "cone-port-restricted" || strings.Contains(s.NATReason, hint) || !slices.Contains(s.Endpoints, own) {
				return fmt.Errorf("%s: %s, publishing %v (%s)", n.Name, s.NATType, s.Endpoints, s.NATReason)
			}
		}
		return nil
	})
	// Each reaches the other directly, on the port the other now listens
	// on: a path to a port given up would be a stale view.
	eventually(t, 20*time.Second, "o1↔o2 direct, each at its own port", func() error {
		for _, pair := range [][2]*lab.Node{{both[0], both[1]}, {both[1], both[0]}} {
			a, b := pair[0], pair[1]
			sb := status(t, b)
			if err := a.Ping(ctx, sb.MeshIPs[0], 1); err != nil {
				return err
			}
			p, err := peerStatus(ctx, a, b)
			if err != nil {
				return err
			}
			if p.Path != "direct" || !strings.HasSuffix(p.PathAddr, ":"+strconv.Itoa(sb.ListenPort)) {
				return fmt.Errorf("%s reaches %s (on %d) %s at %s (%s)", a.Name, b.Name, sb.ListenPort, p.Path, p.PathAddr, p.PathReason)
			}
		}
		return nil
	})
}
