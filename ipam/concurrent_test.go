package ipam

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestConcurrentAllocateRelease(t *testing.T) {
	s, _ := openTest(t, "10.244.1.0/24", "fd00:10:244:1::/64")
	const n = 40

	start := time.Now()
	allocs := make([]Allocation, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { allocs[i], errs[i] = s.Allocate(key(i), Owner{PodName: key(i).ContainerID}) })
	}
	wg.Wait()
	t.Logf("%d concurrent Allocates took %s", n, time.Since(start))

	seen := map[netip.Addr]Key{}
	for i, a := range allocs {
		if errs[i] != nil {
			t.Fatalf("Allocate(%s): %v", key(i), errs[i])
		}
		if len(a.IPs) != 2 {
			t.Fatalf("Allocate(%s) = %v, want 2 addresses", key(i), a.IPs)
		}
		for _, p := range a.IPs {
			if other, dup := seen[p.Addr()]; dup {
				t.Fatalf("%s handed to both %s and %s", p.Addr(), other, a.Key)
			}
			seen[p.Addr()] = a.Key
		}
	}
	checkInvariant(t, s)

	start = time.Now()
	released := make([]bool, n)
	for i := range n {
		wg.Go(func() { released[i], errs[i] = s.Release(key(i)) })
	}
	wg.Wait()
	t.Logf("%d concurrent Releases took %s", n, time.Since(start))
	for i := range n {
		if errs[i] != nil || !released[i] {
			t.Fatalf("Release(%s) = %v, %v", key(i), released[i], errs[i])
		}
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Fatalf("List after releasing everything = %v", list)
	}
	checkInvariant(t, s)
}

// TestConcurrentSameKey checks that racing ADDs of one attachment (a runtime
// retrying while the first call is still in flight) get one allocation.
func TestConcurrentSameKey(t *testing.T) {
	s, _ := openTest(t, "10.244.1.0/24")
	const n = 20
	allocs := make([]Allocation, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a, err := s.Allocate(key(0), Owner{})
			if err != nil {
				t.Error(err)
			}
			allocs[i] = a
		})
	}
	wg.Wait()
	for _, a := range allocs {
		if len(a.IPs) != 1 || a.IPs[0] != allocs[0].IPs[0] {
			t.Fatalf("racing Allocates of one key got %v and %v", allocs[0].IPs, a.IPs)
		}
	}
	if list, _ := s.List(); len(list) != 1 {
		t.Fatalf("List = %v, want one allocation", list)
	}
	checkInvariant(t, s)
}
