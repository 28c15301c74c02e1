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

// Desired computes the peers of self from every known node. A node is a peer
// only while its Node object exists (live reports that), so a node removed
// from the cluster disappears even if its MeshNode lingers. Peers come out
// sorted by name so the result is deterministic; if two nodes claim the same
// key or prefix, the first by name keeps it.
func Desired(self string, nodes []Node, live func(name string) bool) Topology {
	var t Topology
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })

	owners := map[netip.Prefix]string{}
	keys := map[string]string{}
	for _, n := range sorted {
		if n.Name == self || !live(n.Name) {
			continue
		}
		if owner, dup := keys[n.PublicKey.String()]; dup {
			t.Conflicts = append(t.Conflicts, fmt.Sprintf("node %s uses the same public key as %s; skipped", n.Name, owner))
			continue
		}
		keys[n.PublicKey.String()] = n.Name
		var allowed []netip.Prefix
		for _, p := range n.AllowedIPs {
			if owner, dup := owners[p]; dup {
				t.Conflicts = append(t.Conflicts, fmt.Sprintf("node %s advertises %s, already routed to %s; ignored", n.Name, p, owner))
				continue
			}
			owners[p] = n.Name
			allowed = append(allowed, p)
		}
		n.AllowedIPs = allowed
		t.Peers = append(t.Peers, n)
	}
	return t
}

// Routes is every prefix that should be routed to the mesh interface.
func (t Topology) Routes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range t.Peers {
		out = append(out, p.AllowedIPs...)
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
