package kube

import (
	"net/netip"
	"testing"
)

func TestCandidatesCoverPoolWithoutReserved(t *testing.T) {
	pool := netip.MustParsePrefix("10.0.0.0/29")
	got := Candidates(pool, "node-a", 100)
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
	a := Candidates(pool, "node-a", 3)
	b := Candidates(pool, "node-b", 3)
	if a[0] == b[0] {
		t.Fatalf("different nodes start at the same address %s", a[0])
	}
	if again := Candidates(pool, "node-a", 3); again[0] != a[0] {
		t.Fatal("candidates are not deterministic")
	}
	v6 := Candidates(netip.MustParsePrefix("fd77:1ace::/64"), "node-a", 5)
	if len(v6) != 5 || !v6[0].Is6() {
		t.Fatalf("v6 candidates %v", v6)
	}
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
