package ipam

import (
	"bytes"
	"fmt"
	"net/netip"

	bolt "go.etcd.io/bbolt"
)

// checkIndex verifies the invariant between the allocations and the
// used-address indexes (see doc.go) and repairs what it safely can, within
// the caller's write transaction. It is linear in the number of allocations,
// which is bounded by the pods a node runs.
//
// The allocations are the source of truth: an index entry for an address no
// allocation holds is removed, and a missing or wrong entry is rewritten.
// Two allocations holding the same address, or a record that cannot be
// read, cannot be repaired without guessing which pod keeps its address, so
// those are refused.
func checkIndex(tx *bolt.Tx) (repairs []string, err error) {
	holder := make(map[netip.Addr]string) // address -> key of the allocation holding it
	err = tx.Bucket([]byte(bucketAllocations)).ForEach(func(k, v []byte) error {
		a, err := decodeAllocation(v)
		if err != nil {
			return fmt.Errorf("allocation %s: %w", k, err)
		}
		if a.Key.String() != string(k) {
			return fmt.Errorf("allocation stored under %q is for %q", k, a.Key)
		}
		for _, p := range a.IPs {
			if other, dup := holder[p.Addr()]; dup {
				return fmt.Errorf("address %s is held by both %s and %s; release one of them by hand (or remove the database) before starting", p.Addr(), other, a.Key)
			}
			holder[p.Addr()] = a.Key.String()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check allocations: %w", err)
	}

	indexed := make(map[netip.Addr]bool, len(holder))
	for _, name := range []string{bucketUsed4, bucketUsed6} {
		used := tx.Bucket([]byte(name))
		var stale, wrong [][]byte
		_ = used.ForEach(func(k, v []byte) error {
			a, ok := netip.AddrFromSlice(k)
			if !ok || (a.Is4() != (name == bucketUsed4)) {
				stale = append(stale, bytes.Clone(k))
				return nil
			}
			switch key, held := holder[a]; {
			case !held:
				stale = append(stale, bytes.Clone(k))
			case key != string(v):
				wrong = append(wrong, bytes.Clone(k))
			}
			indexed[a] = true
			return nil
		})
		for _, k := range stale {
			repairs = append(repairs, fmt.Sprintf("%s: removed entry %x held by no allocation", name, k))
			if err := used.Delete(k); err != nil {
				return nil, fmt.Errorf("repair %s: %w", name, err)
			}
		}
		for _, k := range wrong {
			a, _ := netip.AddrFromSlice(k)
			repairs = append(repairs, fmt.Sprintf("%s: entry for %s now names its holder %s", name, a, holder[a]))
			if err := used.Put(k, []byte(holder[a])); err != nil {
				return nil, fmt.Errorf("repair %s: %w", name, err)
			}
		}
	}

	for a, key := range holder {
		if indexed[a] {
			continue
		}
		repairs = append(repairs, fmt.Sprintf("added missing index entry for %s held by %s", a, key))
		if err := tx.Bucket(usedBucket(a)).Put(addrKey(a), []byte(key)); err != nil {
			return nil, fmt.Errorf("repair index: %w", err)
		}
	}
	return repairs, nil
}
