package mesh

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// refIndex is the prefix index as it was before it visited only the
// lengths in play: every ancestor, every bit. The index must answer
// exactly as it does, down to which prefix it names, since Desired's
// conflicts quote it.
type refIndex struct {
	exact map[netip.Prefix][]owned
	under map[netip.Prefix]*[2]owned
}

func (x *refIndex) add(p netip.Prefix, node string) {
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

func (x *refIndex) overlapping(p netip.Prefix, node string) (owned, bool) {
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

// The index answers what the reference answers, with every length
// declared, with none (the scan) and with some.
func TestPrefixIndexMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	randPrefix := func() netip.Prefix {
		if r.IntN(4) == 0 {
			var a [16]byte
			a[0], a[1], a[2], a[3] = 0xfd, byte(r.IntN(4)), byte(r.IntN(4)), byte(r.IntN(256))
			return netip.PrefixFrom(netip.AddrFrom16(a), 20+r.IntN(60))
		}
		a := [4]byte{10, byte(r.IntN(2)), byte(r.IntN(64)), byte(r.IntN(256))}
		return netip.PrefixFrom(netip.AddrFrom4(a), 17+r.IntN(16))
	}
	for _, declare := range []string{"all", "none", "some"} {
		type op struct {
			p    netip.Prefix
			node string
		}
		var ops []op
		var qs []netip.Prefix
		for range 3000 {
			o := op{randPrefix(), fmt.Sprintf("n%d", r.IntN(40))}
			ops = append(ops, o)
			if declare == "all" || (declare == "some" && r.IntN(2) == 0) {
				qs = append(qs, o.p)
			}
		}
		x := newPrefixIndex(qs...)
		ref := &refIndex{exact: map[netip.Prefix][]owned{}, under: map[netip.Prefix]*[2]owned{}}
		for _, o := range ops {
			got, gok := x.overlapping(o.p, o.node)
			want, wok := ref.overlapping(o.p, o.node)
			if got != want || gok != wok {
				t.Fatalf("%s: %s for %s: index %v %v, reference %v %v", declare, o.p, o.node, got, gok, want, wok)
			}
			if !gok {
				x.add(o.p, o.node)
				ref.add(o.p, o.node)
			}
		}
	}
}

// The route set names the prefix a scan of the sorted routes finds first.
func TestRouteSetMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var routes []netip.Prefix
	for range 300 {
		a := [4]byte{10, byte(r.IntN(4)), byte(r.IntN(8)), byte(r.IntN(256))}
		routes = append(routes, netip.PrefixFrom(netip.AddrFrom4(a), 14+r.IntN(19)).Masked())
		var b [16]byte
		b[0], b[1], b[2] = 0xfd, byte(r.IntN(4)), byte(r.IntN(16))
		routes = append(routes, netip.PrefixFrom(netip.AddrFrom16(b), 8+r.IntN(120)).Masked())
	}
	sorted := slices.Clone(routes)
	SortPrefixes(sorted)
	set := newRouteSet(routes)
	for range 20000 {
		var a netip.Addr
		if r.IntN(2) == 0 {
			a = netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(8)), byte(r.IntN(256))})
			if r.IntN(4) == 0 {
				a = netip.AddrFrom16(a.As16()) // v4-mapped, as endpoints may be
			}
		} else {
			var b [16]byte
			b[0], b[1], b[2], b[15] = 0xfd, byte(r.IntN(4)), byte(r.IntN(16)), byte(r.IntN(256))
			a = netip.AddrFrom16(b)
		}
		var want netip.Prefix
		found := false
		for _, p := range sorted {
			if p.Contains(a.Unmap()) {
				want, found = p, true
				break
			}
		}
		got, ok := set.containing(a)
		if got != want || ok != found {
			t.Fatalf("%s: set says %v %v, scan %v %v", a, got, ok, want, found)
		}
	}
}
