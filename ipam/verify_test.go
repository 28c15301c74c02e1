package ipam

import (
	"net/netip"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestOpenRepairsIndex(t *testing.T) {
	s, path := openTest(t, "10.244.1.0/24", "fd00::/64")
	a0 := mustAllocate(t, s, key(0))
	a1 := mustAllocate(t, s, key(1))

	// Break the index three ways: a missing entry, an entry naming the wrong
	// key, and an entry for an address nobody holds.
	err := s.db.Update(func(tx *bolt.Tx) error {
		used4, used6 := tx.Bucket([]byte(bucketUsed4)), tx.Bucket([]byte(bucketUsed6))
		if err := used4.Delete(addrKey(a0.IPs[0].Addr())); err != nil {
			return err
		}
		if err := used6.Put(addrKey(a1.IPs[1].Addr()), []byte("someone/else")); err != nil {
			return err
		}
		return used4.Put(addrKey(netip.MustParseAddr("10.244.1.99")), []byte("gone/eth0"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	if r := s.Repairs(); len(r) != 3 {
		t.Errorf("Repairs() = %q, want 3", r)
	}
	checkInvariant(t, s)
	// A second open finds nothing to do.
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r := s.Repairs(); len(r) != 0 {
		t.Errorf("second reopen repaired %q", r)
	}
}

func TestOpenRefusesDoubleHeldAddress(t *testing.T) {
	s, path := openTest(t, "10.244.1.0/24")
	a0 := mustAllocate(t, s, key(0))
	// Forge a second allocation of the same address.
	forged := a0
	forged.Key = key(1)
	v, err := encodeAllocation(forged)
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketAllocations)).Put(forged.Key.dbKey(), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "is held by both") {
		t.Fatalf("Open with an address held twice: %v", err)
	}
}
