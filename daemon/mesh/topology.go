package mesh

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
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
// claim; Facts come from objects the node cannot write alone (its Node's
// spec, the primary CNI's records, the Pods the scheduler bound to it).
type Facts struct {
	// PodCIDRs are the node's pod address blocks as the cluster allocated
	// them: Node.spec.podCIDRs, or the primary CNI's (CiliumNode
	// spec.ipam.podCIDRs).
	PodCIDRs []netip.Prefix
	// PodIPs are the addresses of the Pods bound to the node.
	PodIPs map[netip.Addr]bool
	// NodeIPs are the node's addresses to route through the mesh (its
	// InternalIPs, when node-IP routing is on and they are not on-link).
	NodeIPs []netip.Addr
}

// maxPodIPClaimBits bounds how large an announced pod-IP prefix may be
// when only Pods back it: each address in it must be a Pod's, and a /24
// (or IPv6 /120) is 256 look-ups at most.
const maxPodIPClaimBits = 8

// backs reports whether the facts back an announced pod-IP prefix: it lies
// in one of the node's allocated pod CIDRs, or every address in it is a
// Pod bound to the node.
func (f Facts) backs(p netip.Prefix) bool {
	for _, c := range f.PodCIDRs {
		if c.Bits() <= p.Bits() && c.Contains(p.Addr()) {
			return true
		}
	}
	if p.Addr().BitLen()-p.Bits() > maxPodIPClaimBits || len(f.PodIPs) == 0 {
		return false
	}
	last := lastAddr(p)
	for a := p.Addr(); ; a = a.Next() {
		if !f.PodIPs[a] {
			return false
		}
		if a == last {
			return true
		}
	}
}

// Desired computes the peers of self from every known node. A node is a peer
// only while the cluster knows it (it has Facts: its Node object exists), so
// a node removed from the cluster disappears even if its MeshNode lingers.
// Peers come out sorted by name so the result is deterministic; if two
// nodes claim the same key or prefix, the first by name keeps it. A node's
// announced pod IPs are routed only where its Facts back them.
func Desired(self string, nodes []Node, facts map[string]Facts) Topology {
	var t Topology
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })

	owners := map[netip.Prefix]string{}
	keys := map[string]string{}
	for _, n := range sorted {
		f, live := facts[n.Name]
		if n.Name == self || !live {
			continue
		}
		if owner, dup := keys[n.PublicKey.String()]; dup {
			t.Conflicts = append(t.Conflicts, fmt.Sprintf("node %s uses the same public key as %s; skipped", n.Name, owner))
			continue
		}
		keys[n.PublicKey.String()] = n.Name
		claimed := slices.Clone(n.AllowedIPs)
		for _, p := range n.PodIPClaims {
			if !f.backs(p) {
				t.Conflicts = append(t.Conflicts, fmt.Sprintf("node %s announces pod IPs %s, which neither its pod CIDRs nor Pods bound to it back; ignored", n.Name, p))
				continue
			}
			claimed = append(claimed, p)
		}
		var allowed []netip.Prefix
		for _, p := range claimed {
			if owner, dup := owners[p]; dup {
				t.Conflicts = append(t.Conflicts, fmt.Sprintf("node %s advertises %s, already routed to %s; ignored", n.Name, p, owner))
				continue
			}
			owners[p] = n.Name
			allowed = append(allowed, p)
		}
		n.AllowedIPs, n.PodIPClaims, n.NodeIPs = allowed, nil, nil
		for _, a := range f.NodeIPs {
			p := netip.PrefixFrom(a, a.BitLen())
			if owner, dup := owners[p]; dup {
				t.Conflicts = append(t.Conflicts, fmt.Sprintf("node %s has address %s, already routed to %s; not routed", n.Name, a, owner))
				continue
			}
			owners[p] = n.Name
			n.NodeIPs = append(n.NodeIPs, p)
		}
		t.Peers = append(t.Peers, n)
	}
	t.dropTunnelledEndpoints()
	return t
}

// dropTunnelledEndpoints removes every peer endpoint that lies in a
// prefix routed into the mesh (main table): WireGuard's packets to it
// would be routed into the tunnel they carry. A pod gateway address
// published as a host candidate is the usual case. (Node IPs are routed
// in the node-IP table, which WireGuard's marked packets skip.)
func (t *Topology) dropTunnelledEndpoints() {
	routed := t.Routes()
	for i := range t.Peers {
		n := &t.Peers[i]
		var eps []netip.AddrPort
		var kinds []string
		for j, ep := range n.Endpoints {
			if p, in := containing(routed, ep.Addr()); in {
				t.Conflicts = append(t.Conflicts, fmt.Sprintf("node %s publishes endpoint %s inside %s, which is routed through the mesh; not used", n.Name, ep, p))
				continue
			}
			eps = append(eps, ep)
			if j < len(n.EndpointKinds) {
				kinds = append(kinds, n.EndpointKinds[j])
			}
		}
		n.Endpoints, n.EndpointKinds = eps, kinds
	}
}

// containing returns the first of ps that contains a.
func containing(ps []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
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
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
}
