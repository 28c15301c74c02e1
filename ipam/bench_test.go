package ipam

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkAllocateRelease measures one attachment's life: an allocation and
// its release, each a bbolt write transaction with its fsync, with 200 other
// allocations standing so the index is not empty.
func BenchmarkAllocateRelease(b *testing.B) {
	s, _ := openTest(b, "10.244.0.0/16", "fd00:10:244::/64")
	for i := range 200 {
		mustAllocate(b, s, key(i))
	}
	for i := 0; b.Loop(); i++ {
		k := Key{ContainerID: fmt.Sprintf("bench%d", i), IfName: "eth0"}
		if _, err := s.Allocate(k, Owner{}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Release(k); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllocateReleaseParallel is the same with concurrent callers, as
// when many pods start at once on a node.
func BenchmarkAllocateReleaseParallel(b *testing.B) {
	s, _ := openTest(b, "10.244.0.0/16", "fd00:10:244::/64")
	for i := range 200 {
		mustAllocate(b, s, key(i))
	}
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := Key{ContainerID: fmt.Sprintf("bench%d", n.Add(1)), IfName: "eth0"}
			if _, err := s.Allocate(k, Owner{}); err != nil {
				b.Error(err)
				return
			}
			if _, err := s.Release(k); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
