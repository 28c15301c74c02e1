package ipam

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// openTest opens a store in a fresh directory with the given ranges set.
func openTest(t testing.TB, ranges ...string) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "ipam.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if len(ranges) > 0 {
		if err := s.SetRanges(prefixes(t, ranges...)); err != nil {
			t.Fatal(err)
		}
	}
	return s, path
}

func prefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func key(i int) Key { return Key{ContainerID: fmt.Sprintf("c%03d", i), IfName: "eth0"} }

func mustAllocate(t testing.TB, s *Store, k Key) Allocation {
	t.Helper()
	a, err := s.Allocate(k, Owner{PodNamespace: "default", PodName: k.ContainerID})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustRelease(t testing.TB, s *Store, k Key) {
	t.Helper()
	ok, err := s.Release(k)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("Release(%s) released nothing", k)
	}
}

// usedEntries returns the used-address index of a family as address -> key.
func usedEntries(t testing.TB, s *Store, bucket string) map[netip.Addr]string {
	t.Helper()
	m := map[netip.Addr]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).ForEach(func(k, v []byte) error {
			a, _ := netip.AddrFromSlice(k)
			m[a] = string(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkInvariant fails t unless the used indexes agree exactly with List.
func checkInvariant(t testing.TB, s *Store) {
	t.Helper()
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]string{}
	for _, a := range list {
		for _, p := range a.IPs {
			want[p.Addr()] = a.Key.String()
		}
	}
	got := usedEntries(t, s, bucketUsed4)
	for a, k := range usedEntries(t, s, bucketUsed6) {
		got[a] = k
	}
	if len(got) != len(want) {
		t.Fatalf("index has %d entries, allocations hold %d addresses", len(got), len(want))
	}
	for a, k := range want {
		if got[a] != k {
			t.Fatalf("index entry for %s is %q, want %q", a, got[a], k)
		}
	}
}

func addrs(a Allocation) []string {
	var ss []string
	for _, p := range a.IPs {
		ss = append(ss, p.String())
	}
	return ss
}
