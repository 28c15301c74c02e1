package mesh

import "net/netip"

// prefixIndex records which node was given which prefix, and answers "does
// p overlap a prefix given to another node?" in time proportional to p's
// length rather than to the number of prefixes given: Desired asks it for
// every claim of every node, and a mesh of 1000 nodes has thousands of
// prefixes.
//
// Two prefixes overlap exactly when one contains the other. The ones
// containing p are among p's ancestors (p masked to 0..p.Bits() bits),
// looked up in exact; the ones inside p are found through under, which
// keeps, for every ancestor of every prefix given, the first two nodes
// with a prefix below it: enough to tell whether one of them is not the
// asking node.
type prefixIndex struct {
	exact map[netip.Prefix][]owned
	under map[netip.Prefix]*[2]owned
}

func newPrefixIndex() *prefixIndex {
	return &prefixIndex{exact: map[netip.Prefix][]owned{}, under: map[netip.Prefix]*[2]owned{}}
}

// add records p as given to node.
func (x *prefixIndex) add(p netip.Prefix, node string) {
	p = p.Masked()
	o := owned{p, node}
	x.exact[p] = append(x.exact[p], o)
	for b := 0; b <= p.Bits(); b++ {
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
	for b := 0; b <= p.Bits(); b++ {
		a, _ := p.Addr().Prefix(b)
		for _, o := range x.exact[a] {
			if o.node != node {
				return o, true
			}
		}
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
