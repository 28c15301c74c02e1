package ipam

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Release frees key's addresses and reports whether it had any. Releasing
// an unknown key is not an error: a CNI DEL must never fail for "already
// gone".
func (s *Store) Release(key Key) (bool, error) {
	if err := key.validate(); err != nil {
		return false, fmt.Errorf("release: %w", err)
	}
	// DEL is retried often and for attachments long gone; answer those from
	// a read transaction rather than pay a write transaction's fsync.
	if _, ok, err := s.Get(key); err != nil || !ok {
		return false, err
	}

	var released bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketAllocations)).Get(key.dbKey())
		if v == nil {
			return nil // released by another call since Get
		}
		a, err := decodeAllocation(v)
		if err != nil {
			return err
		}
		released = true
		return deleteAllocation(tx, a)
	})
	if err != nil {
		return false, fmt.Errorf("release %s: %w", key, err)
	}
	return released, nil
}

// GC releases every allocation of network whose key is not in valid and
// returns what it released, in key order. A runtime's valid list covers one
// network, so other networks' allocations are never touched (allocations
// made before networks were recorded have network "", and only a GC for
// network "" releases them; the stale-pod release covers them otherwise).
func (s *Store) GC(network string, valid []Key) ([]Allocation, error) {
	keep := make(map[Key]bool, len(valid))
	for _, k := range valid {
		keep[k] = true
	}

	var released []Allocation
	err := s.db.Update(func(tx *bolt.Tx) error {
		released = nil
		// Collect first: bbolt does not allow changing a bucket during
		// ForEach.
		err := tx.Bucket([]byte(bucketAllocations)).ForEach(func(k, v []byte) error {
			a, err := decodeAllocation(v)
			if err != nil {
				return fmt.Errorf("allocation %s: %w", k, err)
			}
			if a.Network == network && !keep[a.Key] {
				released = append(released, a)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, a := range released {
			if err := deleteAllocation(tx, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	return released, nil
}

// deleteAllocation removes a and its used-index entries. An entry that names
// another key is left alone: by the invariant that cannot happen, and if it
// did, freeing an address another attachment holds would be the worse
// mistake (Open repairs the index).
func deleteAllocation(tx *bolt.Tx, a Allocation) error {
	for _, p := range a.IPs {
		used := tx.Bucket(usedBucket(p.Addr()))
		k := addrKey(p.Addr())
		if string(used.Get(k)) != a.Key.String() {
			continue
		}
		if err := used.Delete(k); err != nil {
			return fmt.Errorf("free %s: %w", p.Addr(), err)
		}
	}
	if err := tx.Bucket([]byte(bucketAllocations)).Delete(a.Key.dbKey()); err != nil {
		return fmt.Errorf("delete allocation %s: %w", a.Key, err)
	}
	return nil
}
