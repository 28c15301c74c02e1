package ipam

import (
	"slices"
	"testing"
)

func TestGC(t *testing.T) {
	s, _ := openTest(t, "10.244.1.0/24", "fd00:10:244:1::/64")
	for i := range 5 {
		mustAllocate(t, s, key(i))
	}
	released, err := s.GC("", []Key{key(1), key(3), key(99)})
	if err != nil {
		t.Fatal(err)
	}
	var got []Key
	for _, a := range released {
		got = append(got, a.Key)
		if len(a.IPs) != 2 {
			t.Errorf("released %s without its addresses: %v", a.Key, a.IPs)
		}
	}
	if want := []Key{key(0), key(2), key(4)}; !slices.Equal(got, want) {
		t.Fatalf("GC released %v, want %v", got, want)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var kept []Key
	for _, a := range list {
		kept = append(kept, a.Key)
	}
	if want := []Key{key(1), key(3)}; !slices.Equal(kept, want) {
		t.Fatalf("after GC List = %v, want %v", kept, want)
	}
	checkInvariant(t, s)

	// Nothing more to do the second time.
	if released, err := s.GC("", []Key{key(1), key(3)}); err != nil || len(released) != 0 {
		t.Fatalf("second GC = %v, %v", released, err)
	}
	// An empty valid list releases everything.
	if released, err := s.GC("", nil); err != nil || len(released) != 2 {
		t.Fatalf("GC(nil) = %v, %v", released, err)
	}
	checkInvariant(t, s)
}

func TestSetRangesKeepsOldAllocations(t *testing.T) {
	s, _ := openTest(t, "10.244.0.0/24", "fd00:1::/64")
	old0 := mustAllocate(t, s, key(0)) // 10.244.0.2
	mustAllocate(t, s, key(1))         // 10.244.0.3

	// Same ranges again: nothing changes, cursors included.
	if err := s.SetRanges(prefixes(t, "10.244.0.0/24", "fd00:1::/64")); err != nil {
		t.Fatal(err)
	}
	if a := mustAllocate(t, s, key(2)); a.IPs[0].String() != "10.244.0.4/24" {
		t.Fatalf("after setting the same ranges got %v, want 10.244.0.4/24", a.IPs)
	}

	// Grow IPv4 to an overlapping /23 and move IPv6 elsewhere.
	if err := s.SetRanges(prefixes(t, "10.244.0.0/23", "fd00:2::/64")); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || !slices.Equal(list[0].IPs, old0.IPs) {
		t.Fatalf("List after range change = %v, want the 3 old allocations unchanged", list)
	}

	// The new range's cursor starts fresh, yet the addresses the old
	// allocations still hold are skipped.
	a := mustAllocate(t, s, key(3))
	if got, want := addrs(a), []string{"10.244.0.5/23", "fd00:2::2/64"}; !slices.Equal(got, want) {
		t.Fatalf("first allocation in new ranges = %v, want %v", got, want)
	}
	checkInvariant(t, s)

	// Old allocations release normally and free their index entries.
	mustRelease(t, s, key(0))
	if _, held := usedEntries(t, s, bucketUsed6)[old0.IPs[1].Addr()]; held {
		t.Fatalf("%s still marked used after release", old0.IPs[1])
	}
	checkInvariant(t, s)
}

// A GC from one CNI network (even with an empty valid list) never releases
// another network's allocations (trust-boundaries review: a second network
// sharing the daemon released every pod of the first, whose addresses then
// went to new pods).
func TestGCScopedToNetwork(t *testing.T) {
	s, _ := openTest(t, "10.244.1.0/24")
	a, err := s.Allocate(key(1), Owner{Network: "wirelace"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(key(2), Owner{Network: "second"}); err != nil {
		t.Fatal(err)
	}
	released, err := s.GC("second", nil)
	if err != nil || len(released) != 1 || released[0].Key != key(2) {
		t.Fatalf("GC of network second released %+v (%v), want only its own", released, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Key != key(1) || list[0].Network != "wirelace" || !slices.Equal(list[0].IPs, a.IPs) {
		t.Fatalf("after GC: %+v %v", list, err)
	}
	checkInvariant(t, s)
}
