package mesh

import "net/netip"

// prefixIndex records which node was given which prefix, and answers "does
// p overlap a prefix given to another node?" in time proportional to the
// number of distinct prefix lengths in play rather than to the number of
// prefixes given: Desired asks it for every claim of every node, and a
// mesh of 1000 nodes has thousands of prefixes.
//
// Two prefixes overlap exactly when one contains the other. The ones
// containing p are among p's ancestors (p masked to fewer bits), looked up
// in exact; the ones inside p are found through under, which keeps, for
// every ancestor of every prefix given, the first two nodes with a prefix
// below it: enough to tell whether one of them is not the asking node.
//
// Only lengths that can matter are visited. An ancestor can be in exact
// only at a length some given prefix has (given); under is only ever read
// at the length of a prefix asked about, so it is kept only at the lengths
// declared up front (asked). A mesh has a handful of lengths (/32, /24,
// /128, /64), so add and overlapping cost a few map operations instead of
// one per bit, which at 1000 nodes was most of Desired's time. A prefix of
// an undeclared length is still answered exactly, by a scan.
type prefixIndex struct {
	exact map[netip.Prefix][]owned
	under map[netip.Prefix]*[2]owned
	all   []owned // in the order added, for scanUnder
	// given and asked are, per family (0 IPv4, 1 IPv6), which lengths
	// exact holds and which lengths under is kept at.
	given, asked [2][129]bool
}

// newPrefixIndex returns an empty index that will be asked about prefixes
// of the lengths of queries (any others are answered by a scan).
func newPrefixIndex(queries ...netip.Prefix) *prefixIndex {
	// Sized up front: growing the maps was a third of Desired's time.
	x := &prefixIndex{exact: make(map[netip.Prefix][]owned, len(queries))}
	lengths := 0
	for _, q := range queries {
		if q.IsValid() && !x.asked[family(q)][q.Bits()] {
			x.asked[family(q)][q.Bits()] = true
			lengths++
		}
	}
	x.under = make(map[netip.Prefix]*[2]owned, len(queries)*min(lengths, 4))
	return x
}

func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

// add records p as given to node.
func (x *prefixIndex) add(p netip.Prefix, node string) {
	p = p.Masked()
	o := owned{p, node}
	x.exact[p] = append(x.exact[p], o)
	x.all = append(x.all, o)
	f := family(p)
	x.given[f][p.Bits()] = true
	for b := 0; b <= p.Bits(); b++ {
		if !x.asked[f][b] {
			continue
		}
		a, _ := p.Addr().Prefix(b)
		e := x.under[a]
		switch {
		case e == nil:
			x.under[a] = &[2]owned{o}
		case e[0].node != node && e[1].node == "":
			e[1] = o
		}
	}
}

// overlapping returns a prefix given to a node other than node that
// overlaps p, and that node, if there is one.
func (x *prefixIndex) overlapping(p netip.Prefix, node string) (owned, bool) {
	p = p.Masked()
	f := family(p)
	for b := 0; b <= p.Bits(); b++ {
		if !x.given[f][b] {
			continue
		}
		a, _ := p.Addr().Prefix(b)
		for _, o := range x.exact[a] {
			if o.node != node {
				return o, true
			}
		}
	}
	if !x.asked[f][p.Bits()] {
		return x.scanUnder(p, node)
	}
	if e := x.under[p]; e != nil {
		for _, o := range e {
			if o.node != "" && o.node != node {
				return o, true
			}
		}
	}
	return owned{}, false
}

// scanUnder answers the "inside p" half of overlapping for a length under
// is not kept at. It is never needed when the index was built with every
// prefix Desired asks about, and is here so that a forgotten length costs
// time, never a wrong answer. It returns what under would have: the first
// prefix added inside p for another node.
func (x *prefixIndex) scanUnder(p netip.Prefix, node string) (owned, bool) {
	for _, o := range x.all {
		if o.node != node && o.p.Bits() >= p.Bits() && p.Contains(o.p.Addr()) {
			return o, true
		}
	}
	return owned{}, false
}
