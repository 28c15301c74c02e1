package ipam

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// List returns every allocation on the node, in key order, including those
// outside the current ranges. The slice is empty, not nil, when there are
// none.
func (s *Store) List() ([]Allocation, error) {
	list := []Allocation{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketAllocations)).ForEach(func(k, v []byte) error {
			a, err := decodeAllocation(v)
			if err != nil {
				return fmt.Errorf("allocation %s: %w", k, err)
			}
			list = append(list, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list allocations: %w", err)
	}
	return list, nil
}

// Get returns the allocation of key, if it has one.
func (s *Store) Get(key Key) (Allocation, bool, error) {
	var (
		a  Allocation
		ok bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketAllocations)).Get(key.dbKey())
		if v == nil {
			return nil
		}
		var err error
		a, err = decodeAllocation(v)
		ok = err == nil
		return err
	})
	if err != nil {
		return Allocation{}, false, fmt.Errorf("get allocation %s: %w", key, err)
	}
	return a, ok, nil
}
