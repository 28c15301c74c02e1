package mesh

import (
	"net/netip"
	"slices"

	"github.com/wirelace/wirelace/internal/netipx"
)

// Aggregate turns a set of addresses into the fewest prefixes that cover
// exactly those addresses (no address outside the set): two sibling
// prefixes merge into their parent, repeatedly. A node announces its
// chained pods' addresses this way, so a primary CNI that hands out
// addresses in runs costs peers a few routes rather than one per pod.
func Aggregate(addrs []netip.Addr) []netip.Prefix {
	set := map[netip.Prefix]bool{}
	for _, a := range addrs {
		a = a.Unmap()
		set[netip.PrefixFrom(a, a.BitLen())] = true
	}
	for changed := true; changed; {
		changed = false
		for p := range set {
			if !set[p] || p.Bits() == 0 {
				continue
			}
			parent, _ := p.Addr().Prefix(p.Bits() - 1)
			lo := netip.PrefixFrom(parent.Addr(), p.Bits())
			hi := netip.PrefixFrom(netipx.LastAddr(parent), p.Bits()).Masked()
			if set[lo] && set[hi] {
				delete(set, lo)
				delete(set, hi)
				set[parent] = true
				changed = true
			}
		}
	}
	out := make([]netip.Prefix, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	SortPrefixes(out)
	return slices.Clip(out)
}
