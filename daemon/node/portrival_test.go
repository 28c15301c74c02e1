package node

import (
	"net/netip"
	"testing"

	"github.com/wirelace/wirelace/api/vocab"
	"github.com/wirelace/wirelace/daemon/mesh"
	"github.com/wirelace/wirelace/daemon/nat"
)

func TestPortRival(t *testing.T) {
	ap := netip.MustParseAddrPort
	node := func(name string, eps ...any) mesh.Node {
		n := mesh.Node{Name: name}
		for i := 0; i < len(eps); i += 2 {
			n.Endpoints = append(n.Endpoints, ap(eps[i].(string)))
			n.EndpointKinds = append(n.EndpointKinds, eps[i+1].(vocab.EndpointKind))
		}
		return n
	}
	// o1 reached both STUN servers first and kept 51820 at 198.18.0.19.
	winner := node("o1", "198.18.0.19:51820", vocab.EndpointSTUN, "10.105.0.2:51820", vocab.EndpointHost)
	pub := node("pub", "198.18.0.21:51820", vocab.EndpointSTUN)
	// The NAT gave o2 another port toward both: it looks cone there.
	lostBoth := nat.Result{Type: vocab.NATConePortRestricted, Mapped: []netip.AddrPort{ap("198.18.0.19:15965")}}
	// Each won one server: both look symmetric, and publish their own port.
	split := nat.Result{Type: vocab.NATSymmetric, Mapped: []netip.AddrPort{ap("198.18.0.19:51820"), ap("198.18.0.19:3346")}}
	for _, tc := range []struct {
		name  string
		self  nat.Result
		port  uint16
		nodes []mesh.Node
		want  string
	}{
		{"lost both servers to a node on our port", lostBoth, 51820, []mesh.Node{pub, winner}, "o1"},
		{"each won one", split, 51820, []mesh.Node{pub, node("o1", "198.18.0.19:51820", vocab.EndpointSTUN)}, "o1"},
		{"the node on our old port, once we moved", nat.Result{Type: vocab.NATConePortRestricted, Mapped: []netip.AddrPort{ap("198.18.0.19:51821")}}, 51821, []mesh.Node{winner}, ""},
		{"the winner sees the loser's other port", nat.Result{Type: vocab.NATConePortRestricted, Mapped: []netip.AddrPort{ap("198.18.0.19:51820")}}, 51820, []mesh.Node{node("o2", "198.18.0.19:15965", vocab.EndpointSTUN)}, ""},
		{"port unknown", lostBoth, 0, []mesh.Node{winner}, ""},
		{"not classified", nat.Result{}, 51820, []mesh.Node{winner}, ""},
		{"our port at another NAT", lostBoth, 51820, []mesh.Node{node("b1", "198.18.0.20:51820", vocab.EndpointSTUN)}, ""},
		{"only a host address matches", lostBoth, 51820, []mesh.Node{node("h", "198.18.0.19:51820", vocab.EndpointHost)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ep := portRival(tc.self, tc.port, tc.nodes)
			if got != tc.want {
				t.Fatalf("portRival = %q (%s), want %q", got, ep, tc.want)
			}
			if got != "" && ep != ap("198.18.0.19:51820") {
				t.Fatalf("endpoint %s, want the shared 198.18.0.19:51820", ep)
			}
		})
	}
}
