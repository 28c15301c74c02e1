package ipam

import (
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Allocate returns the allocation of key if it has one: the same addresses,
// even across daemon restarts, whatever owner says (a repeated CNI ADD is
// the same attachment). Otherwise it takes one address from each pod CIDR,
// all or nothing, and records owner.
//
// Errors wrap ErrNoRanges if the node's pod CIDRs are not set yet,
// ErrExhausted (with the range) if a range is full, and ErrInvalidKey.
func (s *Store) Allocate(key Key, owner Owner) (Allocation, error) {
	if err := key.validate(); err != nil {
		return Allocation{}, fmt.Errorf("allocate: %w", err)
	}

	// A repeated ADD is common (runtime retries); answer it from a read
	// transaction rather than pay a write transaction's fsync.
	if a, ok, err := s.Get(key); err != nil || ok {
		return a, err
	}

	var a Allocation
	err := s.db.Update(func(tx *bolt.Tx) error {
		allocs := tx.Bucket([]byte(bucketAllocations))
		// Checked again: another call may have allocated key since Get.
		if v := allocs.Get(key.dbKey()); v != nil {
			var err error
			a, err = decodeAllocation(v)
			return err
		}

		ranges, err := loadRanges(tx)
		if err != nil {
			return err
		}
		if len(ranges) == 0 {
			return ErrNoRanges
		}
		a = Allocation{Key: key, Owner: owner, Created: time.Now().UTC()}
		for _, r := range ranges {
			// An error here returns from Update, which rolls back the
			// addresses already taken in the other range.
			addr, err := allocateIn(tx, r, key)
			if err != nil {
				return err
			}
			a.IPs = append(a.IPs, netip.PrefixFrom(addr, r.Bits()))
		}
		v, err := encodeAllocation(a)
		if err != nil {
			return err
		}
		return allocs.Put(key.dbKey(), v)
	})
	if err != nil {
		return Allocation{}, fmt.Errorf("allocate %s: %w", key, err)
	}
	return a, nil
}

// allocateIn takes the first free address of r after its cursor (the last
// address handed out), wrapping to the start of the range, records it in
// the used index for key and moves the cursor to it. Handing out addresses
// round-robin rather than lowest-first keeps a just-released address out of
// use for as long as the range allows, so stale conntrack entries and
// neighbour caches for it have time to expire.
func allocateIn(tx *bolt.Tx, r netip.Prefix, key Key) (netip.Addr, error) {
	used := tx.Bucket(usedBucket(r.Addr()))
	cursors := tx.Bucket([]byte(bucketCursors))
	cursorKey := []byte(r.String())

	first, last := usable(r)
	start := first
	if c, ok := netip.AddrFromSlice(cursors.Get(cursorKey)); ok && c.Compare(first) >= 0 && c.Compare(last) < 0 {
		start = c.Next()
	}

	addr, ok := nextFree(used, start, last)
	if !ok && start != first {
		addr, ok = nextFree(used, first, start.Prev())
	}
	if !ok {
		return netip.Addr{}, fmt.Errorf("pod CIDR %s: %w", r, ErrExhausted)
	}

	if err := used.Put(addrKey(addr), key.dbKey()); err != nil {
		return netip.Addr{}, fmt.Errorf("mark %s used: %w", addr, err)
	}
	if err := cursors.Put(cursorKey, addrKey(addr)); err != nil {
		return netip.Addr{}, fmt.Errorf("move cursor of %s: %w", r, err)
	}
	return addr, nil
}

// nextFree returns the lowest address in [from, to] that has no entry in
// used. It seeks to from and walks the run of consecutive taken addresses
// that starts there, so its cost is the length of that run, never the size
// of the range (which may be a /64).
func nextFree(used *bolt.Bucket, from, to netip.Addr) (netip.Addr, bool) {
	if from.Compare(to) > 0 {
		return netip.Addr{}, false
	}
	c := used.Cursor()
	candidate := from
	for k, _ := c.Seek(addrKey(from)); k != nil; k, _ = c.Next() {
		// Keys come in address order from from on; the first one that is
		// not the candidate is above it, so the candidate is free.
		if a, ok := netip.AddrFromSlice(k); !ok || a != candidate {
			break
		}
		if candidate == to {
			return netip.Addr{}, false
		}
		candidate = candidate.Next()
	}
	return candidate, true
}
