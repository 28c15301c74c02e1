package mesh

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// The index answers exactly what comparing with every given prefix
// answers, on random prefixes of both families, nested and disjoint.
func TestPrefixIndexMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randPrefix := func() netip.Prefix {
		if r.IntN(4) == 0 {
			var a [16]byte
			a[0], a[1] = 0xfd, byte(r.IntN(4))
			a[2] = byte(r.IntN(4))
			a[3] = byte(r.IntN(256))
			return netip.PrefixFrom(netip.AddrFrom16(a), 20+r.IntN(60)).Masked()
		}
		a := [4]byte{10, byte(r.IntN(2)), byte(r.IntN(64)), byte(r.IntN(256))}
		return netip.PrefixFrom(netip.AddrFrom4(a), 17+r.IntN(16)).Masked()
	}
	x := newPrefixIndex()
	var given []owned
	checked, overlaps := 0, 0
	for i := 0; i < 3000; i++ {
		p, node := randPrefix(), fmt.Sprintf("n%d", r.IntN(40))
		want := false
		for _, o := range given {
			if o.node != node && o.p.Overlaps(p) {
				want = true
				break
			}
		}
		got, ok := x.overlapping(p, node)
		if ok != want {
			t.Fatalf("%s for %s: index says %v (%v), brute force %v", p, node, ok, got, want)
		}
		if ok && (got.node == node || !got.p.Overlaps(p)) {
			t.Fatalf("%s for %s: index names %v, which does not overlap it for another node", p, node, got)
		}
		checked++
		if ok {
			overlaps++
			continue
		}
		x.add(p, node)
		given = append(given, owned{p, node})
	}
	// Both answers must have come up often, or the test proves little.
	if overlaps < checked/10 || overlaps > checked*9/10 {
		t.Fatalf("%d overlaps in %d checks: adjust the generator", overlaps, checked)
	}
}

// BenchmarkPrefixIndex1000Nodes: Desired's overlap checks for 1000 nodes.
func BenchmarkPrefixIndex1000Nodes(b *testing.B) {
	ps := prefixesOf1000Nodes()
	b.ResetTimer()
	var qs []netip.Prefix
	for _, o := range ps {
		qs = append(qs, o.p)
	}
	for b.Loop() {
		x := newPrefixIndex(qs...)
		for _, o := range ps {
			if _, ok := x.overlapping(o.p, o.node); ok {
				b.Fatal("unexpected overlap")
			}
			x.add(o.p, o.node)
		}
	}
}

// BenchmarkPrefixScan1000Nodes is what the index replaced, for comparison:
// every claim compared with every prefix given so far.
func BenchmarkPrefixScan1000Nodes(b *testing.B) {
	ps := prefixesOf1000Nodes()
	b.ResetTimer()
	for b.Loop() {
		var given []owned
		for _, o := range ps {
			for _, g := range given {
				if g.node != o.node && g.p.Overlaps(o.p) {
					b.Fatal("unexpected overlap")
				}
			}
			given = append(given, o)
		}
	}
}

// prefixesOf1000Nodes: each node a mesh IP and a pod CIDR per family.
func prefixesOf1000Nodes() []owned {
	var ps []owned
	for i := 0; i < 1000; i++ {
		node := fmt.Sprintf("n%d", i)
		ps = append(ps,
			owned{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)}), 32), node},
			owned{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(128 + i>>8), byte(i), 0}), 24), node},
			owned{netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x44, 6: byte(i >> 8), 7: byte(i)}), 64), node},
		)
	}
	return ps
}
