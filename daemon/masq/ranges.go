package masq

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"

	"github.com/wirelace/wirelace/internal/netipx"
)

// Range is the addresses from First to Last, inclusive.
type Range struct{ First, Last netip.Addr }

// Ranges merges prefixes (of one family) into sorted, disjoint ranges:
// an interval set refuses overlapping elements, and a mesh's prefixes
// overlap (a mesh pool and each node's mesh IP in it) and often abut (pod
// CIDRs cut from one cluster pool), which merging turns into a few ranges.
func Ranges(ps []netip.Prefix) []Range {
	rs := make([]Range, 0, len(ps))
	for _, p := range ps {
		p = p.Masked()
		rs = append(rs, Range{p.Addr(), netipx.LastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b Range) int { return a.First.Compare(b.First) })
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 {
			prev := &out[n-1]
			// Overlapping, or adjacent (prev.Last+1 == r.First).
			if next := prev.Last.Next(); r.First.Compare(prev.Last) <= 0 || next.IsValid() && next == r.First {
				if r.Last.Compare(prev.Last) > 0 {
					prev.Last = r.Last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// Elements encodes ranges as an interval set's elements: each range's
// first address, then the address after its last one flagged as the
// interval's end (none when the range runs to the family's last address).
func Elements(rs []Range) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, 2*len(rs))
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: r.First.AsSlice()})
		if end := r.Last.Next(); end.IsValid() {
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}
