package ipam

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestAllocateDualStack(t *testing.T) {
	s, _ := openTest(t, "10.244.1.0/24", "fd00:10:244:1::/64")
	k := Key{ContainerID: "abc", IfName: "eth0"}
	owner := Owner{Netns: "/var/run/netns/x", PodNamespace: "default", PodName: "web", PodUID: "u1"}

	a, err := s.Allocate(k, owner)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := addrs(a), []string{"10.244.1.2/24", "fd00:10:244:1::2/64"}; !slices.Equal(got, want) {
		t.Fatalf("IPs = %v, want %v", got, want)
	}
	if a.Key != k || a.Owner != owner || a.Created.IsZero() {
		t.Fatalf("allocation = %+v", a)
	}

	// A repeated ADD, even with a different owner, is the same attachment.
	again, err := s.Allocate(k, Owner{PodName: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(addrs(again), addrs(a)) || again.Owner != owner || !again.Created.Equal(a.Created) {
		t.Fatalf("repeat = %+v, want %+v", again, a)
	}

	got, ok, err := s.Get(k)
	if err != nil || !ok || !slices.Equal(addrs(got), addrs(a)) {
		t.Fatalf("Get = %+v, %v, %v", got, ok, err)
	}
	if _, ok, err := s.Get(Key{ContainerID: "abc", IfName: "net1"}); err != nil || ok {
		t.Fatalf("Get(other interface) = %v, %v", ok, err)
	}

	// A second interface of the same container is a separate attachment.
	b := mustAllocate(t, s, Key{ContainerID: "abc", IfName: "net1"})
	if got, want := addrs(b), []string{"10.244.1.3/24", "fd00:10:244:1::3/64"}; !slices.Equal(got, want) {
		t.Fatalf("second interface IPs = %v, want %v", got, want)
	}
	checkInvariant(t, s)
}

func TestAllocateReleaseMovesOn(t *testing.T) {
	s, _ := openTest(t, "10.244.1.0/24", "fd00:10:244:1::/64")
	a := mustAllocate(t, s, key(1))
	mustRelease(t, s, key(1))
	if ok, err := s.Release(key(1)); err != nil || ok {
		t.Fatalf("second Release = %v, %v; want false, nil", ok, err)
	}
	if ok, err := s.Release(Key{ContainerID: "never", IfName: "eth0"}); err != nil || ok {
		t.Fatalf("Release(unknown) = %v, %v; want false, nil", ok, err)
	}

	b := mustAllocate(t, s, key(2))
	if got, want := addrs(b), []string{"10.244.1.3/24", "fd00:10:244:1::3/64"}; !slices.Equal(got, want) {
		t.Fatalf("after release of %v got %v, want %v (the cursor moves on)", addrs(a), got, want)
	}
	// Even the same key gets new addresses once released: it is a new
	// attachment as far as the network is concerned.
	mustRelease(t, s, key(2))
	c := mustAllocate(t, s, key(1))
	if got, want := addrs(c), []string{"10.244.1.4/24", "fd00:10:244:1::4/64"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	checkInvariant(t, s)
}

func TestAllocateNoRanges(t *testing.T) {
	s, _ := openTest(t)
	_, err := s.Allocate(key(1), Owner{})
	if !errors.Is(err, ErrNoRanges) {
		t.Fatalf("Allocate without ranges: %v, want ErrNoRanges", err)
	}
	if err := s.SetRanges(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(key(1), Owner{}); !errors.Is(err, ErrNoRanges) {
		t.Fatalf("Allocate with empty ranges: %v, want ErrNoRanges", err)
	}
}

func TestInvalidKey(t *testing.T) {
	s, _ := openTest(t, "10.244.1.0/24")
	for _, k := range []Key{{}, {ContainerID: "c"}, {IfName: "eth0"}, {ContainerID: "c", IfName: "a/b"}} {
		if _, err := s.Allocate(k, Owner{}); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Allocate(%+v): %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Release(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Release(%+v): %v, want ErrInvalidKey", k, err)
		}
	}
}

// TestExhaustion uses a /29: 8 addresses, of which the network address, the
// gateway and the broadcast address are reserved, so exactly 5 are handed
// out. The IPv6 range comes first so that, when IPv4 runs out, an IPv6
// address has already been taken in the transaction: it must be rolled back.
func TestExhaustion(t *testing.T) {
	s, _ := openTest(t, "fd00::/64", "10.0.0.8/29")

	var got4 []string
	for i := range 5 {
		a := mustAllocate(t, s, key(i))
		got4 = append(got4, a.IPs[1].String())
	}
	want4 := []string{"10.0.0.10/29", "10.0.0.11/29", "10.0.0.12/29", "10.0.0.13/29", "10.0.0.14/29"}
	if !slices.Equal(got4, want4) {
		t.Fatalf("IPv4 addresses %v, want %v", got4, want4)
	}

	_, err := s.Allocate(key(5), Owner{})
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("6th Allocate: %v, want ErrExhausted", err)
	}
	if !strings.Contains(err.Error(), "10.0.0.8/29") {
		t.Errorf("error %q does not name the range", err)
	}

	// Nothing half-allocated: no record, and no IPv6 address taken.
	if _, ok, _ := s.Get(key(5)); ok {
		t.Fatal("failed Allocate left an allocation")
	}
	if n := len(usedEntries(t, s, bucketUsed6)); n != 5 {
		t.Fatalf("%d IPv6 addresses in use after a failed allocation, want 5", n)
	}
	checkInvariant(t, s)

	// Nor did it move the IPv6 cursor: the next one is ::7, not ::8. IPv4
	// wraps to the only free address.
	mustRelease(t, s, key(2))
	a := mustAllocate(t, s, key(5))
	if got, want := addrs(a), []string{"fd00::7/64", "10.0.0.12/29"}; !slices.Equal(got, want) {
		t.Fatalf("after release got %v, want %v", got, want)
	}
}

func TestWrapAround(t *testing.T) {
	s, _ := openTest(t, "10.0.0.0/29")
	for i := range 5 {
		mustAllocate(t, s, key(i)) // .2 .. .6
	}
	mustRelease(t, s, key(2)) // .4
	mustRelease(t, s, key(0)) // .2
	// The cursor is at .6, the end: wrap and take the lowest free first.
	for i, want := range []string{"10.0.0.2/29", "10.0.0.4/29"} {
		a := mustAllocate(t, s, key(10+i))
		if got := a.IPs[0].String(); got != want {
			t.Fatalf("allocation %d after wrap = %s, want %s", i, got, want)
		}
	}
	if _, err := s.Allocate(key(20), Owner{}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Allocate on full range: %v, want ErrExhausted", err)
	}
	checkInvariant(t, s)
}

// TestSkipsTakenRun checks that the walk over consecutive taken addresses
// lands on the first gap, across a byte boundary.
func TestSkipsTakenRun(t *testing.T) {
	s, _ := openTest(t, "10.0.0.0/23")
	for i := range 300 {
		mustAllocate(t, s, key(i)) // 10.0.0.2 .. 10.0.1.45
	}
	mustRelease(t, s, key(100)) // 10.0.0.102
	// Fill the rest (10.0.1.46 .. 10.0.1.254): the cursor reaches the end.
	for i := 300; i < 509; i++ {
		mustAllocate(t, s, key(i))
	}
	// Wrapping, the walk from 10.0.0.2 steps over the run up to the gap.
	a := mustAllocate(t, s, key(1000))
	if got := a.IPs[0].Addr(); got != netip.MustParseAddr("10.0.0.102") {
		t.Fatalf("after wrap got %s, want 10.0.0.102", got)
	}
	if _, err := s.Allocate(key(1001), Owner{}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Allocate on full /23: %v, want ErrExhausted", err)
	}
}
