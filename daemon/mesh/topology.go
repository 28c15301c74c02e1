package mesh

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/netipx"
)

// Topology is the set of peers one node should have.
type Topology struct {
	Peers []Node
	// Conflicts says which peers or prefixes were left out and why, so the
	// daemon can log them instead of silently misrouting.
	Conflicts []string
}

// Facts are what the cluster, rather than a node's own MeshNode, says
// about a node. A MeshNode is written by the node it describes, so it is a
// claim; Facts come from objects the node cannot forge for another node:
// IPClaims (created atomically, and by the admission policy only for the
// claimant's own name), its Node's spec, the primary CNI's records, the
// Pods the scheduler bound to it, and RouteGrants, which only operators
// write.
type Facts struct {
	// MeshIPs are the mesh addresses the node holds IPClaims for.
	MeshIPs []netip.Addr
	// PodCIDRs are the node's pod address blocks as the cluster allocated
	// them: Node.spec.podCIDRs, its pod-CIDR IPClaims, or the primary
	// CNI's (CiliumNode spec.ipam.podCIDRs).
	PodCIDRs []netip.Prefix
	// PodIPs are the addresses of the Pods bound to the node.
	PodIPs map[netip.Addr]bool
	// Grants are the prefixes an operator allowed the node to advertise.
	Grants []netip.Prefix
	// NodeIPs are the node's addresses to route through the mesh (its
	// InternalIPs, when node-IP routing is on and they are not on-link).
	NodeIPs []netip.Addr
}

// maxPodIPClaimBits bounds how large an announced pod-IP prefix may be
// when only Pods back it: each address in it must be a Pod's, and a /24
// (or IPv6 /120) is 256 look-ups at most.
const maxPodIPClaimBits = 8

// backsPodIPs reports whether the facts back an announced pod-IP prefix:
// it lies in one of the node's allocated pod CIDRs, or every address in it
// is a Pod bound to the node.
func (f Facts) backsPodIPs(p netip.Prefix) bool {
	if within(f.PodCIDRs, p) {
		return true
	}
	if p.Addr().BitLen()-p.Bits() > maxPodIPClaimBits || len(f.PodIPs) == 0 {
		return false
	}
	last := netipx.LastAddr(p)
	for a := p.Addr(); ; a = a.Next() {
		if !f.PodIPs[a] {
			return false
		}
		if a == last {
			return true
		}
	}
}

// within reports whether p lies inside one of ps.
func within(ps []netip.Prefix, p netip.Prefix) bool {
	for _, c := range ps {
		if c.Bits() <= p.Bits() && c.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// Self is what the computing node knows of itself.
type Self struct {
	Name      string
	PublicKey wgtypes.Key
	// Protected are prefixes that must never be routed into the mesh,
	// whoever claims them: this node's own networks (the underlay), the
	// API server, relays and STUN servers, its own mesh IPs and pod CIDRs.
	// Routing one of them to a peer would hand that peer this node's
	// traffic, or cut the node off from what keeps the mesh up.
	Protected []netip.Prefix
}

// Desired computes the peers of self from every known node. A node is a
// peer only while the cluster knows it (it has Facts: its Node object
// exists), so a node removed from the cluster disappears even if its
// MeshNode lingers. Every claim of a node's MeshNode is checked:
//
//   - mesh IPs must be held through IPClaims, pod CIDRs allocated to the
//     node, chained pod IPs backed by its pod CIDRs or Pods, advertised
//     prefixes inside an operator's RouteGrant;
//   - no default route, nothing overlapping a Protected prefix;
//   - nothing overlapping what another node was already given: allocated
//     prefixes (mesh IPs, pod CIDRs, pod IPs) of every node first, then
//     granted ones (advertised prefixes, node IPs), each in name order.
//     With every claim backed, an overlap is a configuration error (an
//     over-broad grant, say), never something a node can provoke;
//   - a WireGuard key used by two nodes (or by self) is given to neither.
//
// What is refused is reported in Conflicts. Peers come out sorted by name
// so the result is deterministic.
func Desired(self Self, nodes []Node, facts map[string]Facts) Topology {
	t, _, _, _ := desired(self, nodes, facts)
	return t
}

// desired is Desired, also returning what DesiredCache keeps to patch the
// result later: the conflicts found before the endpoint checks, each
// peer's endpoint conflicts, and the routed set the endpoints were
// checked against.
func desired(self Self, nodes []Node, facts map[string]Facts) (t Topology, admitted []string, endpoints [][]string, routed routeSet) {
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })

	users := make(map[wgtypes.Key][]string, len(sorted))
	for _, n := range sorted {
		if _, live := facts[n.Name]; live && n.Name != self.Name {
			users[n.PublicKey] = append(users[n.PublicKey], n.Name)
		}
	}
	// First what the cluster allocated (mesh IPs, pod CIDRs, pod IPs), for
	// every node; then what is only granted or reported (advertised
	// prefixes, node IPs). An over-broad grant can then never take a pod
	// CIDR from the node it was allocated to, whatever the names' order.
	// Sized up front: a Node is large, and growing these by appending was
	// a good part of Desired's time at 1000 nodes.
	peers := make([]Node, 0, len(sorted))
	wide := make([][]netip.Prefix, 0, len(sorted))                // advertised claims that passed their grant, by peer
	accepted := newPrefixIndex(claimedPrefixes(sorted, facts)...) // every prefix given to a peer so far
	for _, n := range sorted {
		f, live := facts[n.Name]
		if n.Name == self.Name || !live {
			continue
		}
		if n.PublicKey == self.PublicKey {
			t.conflict("node %s uses this node's own WireGuard key; skipped", n.Name)
			continue
		}
		if u := users[n.PublicKey]; len(u) > 1 {
			t.conflict("node %s uses the same WireGuard key as %s; none of them is a peer", n.Name, strings.Join(slices.DeleteFunc(slices.Clone(u), func(s string) bool { return s == n.Name }), ", "))
			continue
		}
		var claims []netip.Prefix
		for _, a := range n.MeshIPClaims {
			if !slices.Contains(f.MeshIPs, a) {
				t.conflict("node %s claims mesh IP %s, for which it holds no IPClaim; ignored", n.Name, a)
				continue
			}
			claims = append(claims, netip.PrefixFrom(a, a.BitLen()))
		}
		for _, p := range n.PodCIDRClaims {
			if !within(f.PodCIDRs, p) {
				t.conflict("node %s claims pod CIDR %s, which the cluster did not allocate to it; ignored", n.Name, p)
				continue
			}
			claims = append(claims, p)
		}
		for _, p := range n.PodIPClaims {
			if !f.backsPodIPs(p) {
				t.conflict("node %s announces pod IPs %s, which neither its pod CIDRs nor Pods bound to it back; ignored", n.Name, p)
				continue
			}
			claims = append(claims, p)
		}
		var granted []netip.Prefix
		for _, p := range n.AdvertisedClaims {
			if !within(f.Grants, p) {
				t.conflict("node %s advertises %s, which no RouteGrant allows it; ignored", n.Name, p)
				continue
			}
			granted = append(granted, p)
		}
		for _, a := range f.NodeIPs {
			granted = append(granted, netip.PrefixFrom(a, a.BitLen()))
		}
		n.AllowedIPs = t.admit(n.Name, claims, self.Protected, accepted)
		n.MeshIPClaims, n.PodCIDRClaims, n.PodIPClaims, n.AdvertisedClaims = nil, nil, nil, nil
		peers = append(peers, n)
		wide = append(wide, granted)
	}
	for i := range peers {
		n := &peers[i]
		for _, p := range t.admit(n.Name, wide[i], self.Protected, accepted) {
			if p.Bits() == p.Addr().BitLen() && slices.Contains(facts[n.Name].NodeIPs, p.Addr()) {
				n.NodeIPs = append(n.NodeIPs, p)
			} else {
				n.AllowedIPs = append(n.AllowedIPs, p)
			}
		}
	}
	t.Peers = peers
	admitted = slices.Clip(t.Conflicts)
	endpoints, routed = t.dropTunnelledEndpoints()
	return t, admitted, endpoints, routed
}

// claimedPrefixes is every prefix Desired may ask the index about: each
// node's claims and node IPs, checked or not.
func claimedPrefixes(nodes []Node, facts map[string]Facts) []netip.Prefix {
	out := make([]netip.Prefix, 0, 2*len(nodes))
	for _, n := range nodes {
		for _, a := range n.MeshIPClaims {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
		out = append(out, n.PodCIDRClaims...)
		out = append(out, n.PodIPClaims...)
		out = append(out, n.AdvertisedClaims...)
		for _, a := range facts[n.Name].NodeIPs {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

// owned is a prefix and the node it was given to.
type owned struct {
	p    netip.Prefix
	node string
}

// admit returns those of node's backed prefixes that are no default route,
// overlap no protected prefix and nothing already given to another node,
// and records them as given.
func (t *Topology) admit(node string, ps, protected []netip.Prefix, accepted *prefixIndex) []netip.Prefix {
	var out []netip.Prefix
next:
	for _, p := range ps {
		if p.Bits() == 0 {
			t.conflict("node %s claims a default route (%s); ignored", node, p)
			continue
		}
		for _, q := range protected {
			if p.Overlaps(q) {
				t.conflict("node %s claims %s, which overlaps %s that this node must reach outside the mesh; ignored", node, p, q)
				continue next
			}
		}
		if o, ok := accepted.overlapping(p, node); ok {
			t.conflict("node %s claims %s, which overlaps %s already routed to %s; ignored", node, p, o.p, o.node)
			continue
		}
		accepted.add(p, node)
		out = append(out, p)
	}
	return out
}

func (t *Topology) conflict(format string, a ...any) {
	t.Conflicts = append(t.Conflicts, fmt.Sprintf(format, a...))
}

// dropTunnelledEndpoints removes every peer endpoint that lies in a
// prefix routed into the mesh (main table): WireGuard's packets to it
// would be routed into the tunnel they carry. A pod gateway address
// published as a host candidate is the usual case. (Node IPs are routed
// in the node-IP table, which WireGuard's marked packets skip.) It
// returns each peer's conflicts and the routed set.
func (t *Topology) dropTunnelledEndpoints() ([][]string, routeSet) {
	routed := make([]netip.Prefix, 0, 2*len(t.Peers))
	for _, p := range t.Peers {
		routed = append(routed, p.AllowedIPs...)
	}
	set := newRouteSet(routed)
	conflicts := make([][]string, len(t.Peers))
	for i := range t.Peers {
		n := &t.Peers[i]
		n.Endpoints, n.EndpointKinds, conflicts[i] = set.checkEndpoints(n.Name, n.Endpoints, n.EndpointKinds)
		t.Conflicts = append(t.Conflicts, conflicts[i]...)
	}
	return conflicts, set
}

// routeSet answers which routed prefix contains an address with a map
// look-up per distinct prefix length, instead of a scan of every route:
// every peer's every endpoint is checked, and at 1000 peers with two
// routes each the scan was two million comparisons per reconcile.
type routeSet struct {
	set     map[netip.Prefix]netip.Prefix // masked -> as routed
	lengths [2][129]bool                  // per family (0 IPv4, 1 IPv6), lengths in set
}

func newRouteSet(ps []netip.Prefix) routeSet {
	r := routeSet{set: make(map[netip.Prefix]netip.Prefix, len(ps))}
	for _, p := range ps {
		if _, dup := r.set[p.Masked()]; !dup {
			r.set[p.Masked()] = p
		}
		r.lengths[family(p)][p.Bits()] = true
	}
	return r
}

// containing returns the shortest routed prefix that contains a: the one
// a scan of the routes in Routes' order (address, then length) finds
// first, since of two prefixes that both contain a the shorter sorts
// first.
func (r routeSet) containing(a netip.Addr) (netip.Prefix, bool) {
	a = a.Unmap()
	if a.Zone() != "" {
		return netip.Prefix{}, false // as Prefix.Contains: a zone never matches
	}
	f := 1
	if a.Is4() {
		f = 0
	}
	for b := 0; b <= a.BitLen(); b++ {
		if !r.lengths[f][b] {
			continue
		}
		m, _ := a.Prefix(b)
		if p, in := r.set[m]; in {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Routes is every prefix that should be routed to the mesh interface in
// the main table.
func (t Topology) Routes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range t.Peers {
		out = append(out, p.AllowedIPs...)
	}
	SortPrefixes(out)
	return out
}

// NodeIPRoutes is every peer address routed to the mesh interface in the
// node-IP table, which WireGuard's own (marked) packets bypass.
func (t Topology) NodeIPRoutes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range t.Peers {
		out = append(out, p.NodeIPs...)
	}
	SortPrefixes(out)
	return out
}

// SortPrefixes orders prefixes by address then length.
func SortPrefixes(ps []netip.Prefix) {
	slices.SortFunc(ps, comparePrefixes)
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
