package kube

import (
	"net/netip"
	"testing"
)

func TestCandidatesCoverPoolWithoutReserved(t *testing.T) {
	pool := netip.MustParsePrefix("10.0.0.0/29")
	got := addrs(Candidates(pool, 32, "node-a", 100))
	if len(got) != 6 {
		t.Fatalf("got %d candidates %v, want 6 usable hosts", len(got), got)
	}
	seen := map[netip.Addr]bool{}
	for _, a := range got {
		if a == netip.MustParseAddr("10.0.0.0") || a == netip.MustParseAddr("10.0.0.7") || !pool.Contains(a) {
			t.Errorf("bad candidate %s", a)
		}
		if seen[a] {
			t.Errorf("duplicate candidate %s", a)
		}
		seen[a] = true
	}
}

func TestCandidatesDependOnSeed(t *testing.T) {
	pool := netip.MustParsePrefix("10.77.0.0/16")
	a := Candidates(pool, 32, "node-a", 3)
	b := Candidates(pool, 32, "node-b", 3)
	if a[0] == b[0] {
		t.Fatalf("different nodes start at the same address %s", a[0])
	}
	if again := Candidates(pool, 32, "node-a", 3); again[0] != a[0] {
		t.Fatal("candidates are not deterministic")
	}
	v6 := Candidates(netip.MustParsePrefix("fd77:1ace::/64"), 128, "node-a", 5)
	if len(v6) != 5 || !v6[0].Addr().Is6() {
		t.Fatalf("v6 candidates %v", v6)
	}
}

func TestCandidateBlocks(t *testing.T) {
	pool := netip.MustParsePrefix("10.244.0.0/22")
	got := Candidates(pool, 24, "node-a", 100)
	if len(got) != 4 {
		t.Fatalf("got %v, want the 4 /24 blocks", got)
	}
	seen := map[netip.Prefix]bool{}
	for _, p := range got {
		if p.Bits() != 24 || p.Masked() != p || !pool.Contains(p.Addr()) || seen[p] {
			t.Fatalf("bad block %s in %v", p, got)
		}
		seen[p] = true
	}
	v6 := Candidates(netip.MustParsePrefix("fd44:1ace::/48"), 64, "node-a", 3)
	if len(v6) != 3 || v6[0].Bits() != 64 || v6[0].Masked() != v6[0] {
		t.Fatalf("v6 blocks %v", v6)
	}
	if Candidates(pool, 20, "x", 10) != nil {
		t.Fatal("blocks larger than the pool must give no candidates")
	}
}

func addrs(ps []netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for _, p := range ps {
		out = append(out, p.Addr())
	}
	return out
}

func TestClaimName(t *testing.T) {
	cases := map[string]string{
		"10.77.0.5/32":       "10.77.0.5-32",
		"fd77:1ace::5/128":   "fd77-1ace--5-128",
		"::/0":               "0--0-0",
		"10.244.3.0/24":      "10.244.3.0-24",
		"fd77:1ace:0:1::/64": "fd77-1ace-0-1--0-64",
	}
	for in, want := range cases {
		if got := ClaimName(netip.MustParsePrefix(in)); got != want {
			t.Errorf("ClaimName(%s) = %s, want %s", in, got, want)
		}
	}
}
