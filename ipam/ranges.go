package ipam

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// SetRanges sets the node's pod CIDRs: at most one IPv4 and one IPv6, in the
// order addresses should be listed (the Node's podCIDRs order, primary
// family first). Existing allocations outside the new ranges stay until
// released, and keep their addresses reserved; new allocations use the new
// ranges. Setting the ranges already set writes nothing, so the daemon may
// call this on every start and every Node update.
func (s *Store) SetRanges(ranges []netip.Prefix) error {
	norm, err := normalizeRanges(ranges)
	if err != nil {
		return fmt.Errorf("set pod CIDRs: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(norm, s.ranges) {
		return nil
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := json.Marshal(norm)
		if err != nil {
			return fmt.Errorf("encode ranges: %w", err)
		}
		if err := tx.Bucket([]byte(bucketMeta)).Put([]byte(keyRanges), b); err != nil {
			return fmt.Errorf("store ranges: %w", err)
		}
		// Drop the cursors of ranges no longer set; those of ranges kept
		// stay, so a changed IPv6 range does not restart the IPv4 cursor.
		cursors := tx.Bucket([]byte(bucketCursors))
		var stale [][]byte
		_ = cursors.ForEach(func(k, _ []byte) error {
			p, err := netip.ParsePrefix(string(k))
			if err != nil || !slices.Contains(norm, p) {
				stale = append(stale, bytes.Clone(k)) // k is only valid until the bucket changes
			}
			return nil
		})
		for _, k := range stale {
			if err := cursors.Delete(k); err != nil {
				return fmt.Errorf("drop cursor %s: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set pod CIDRs %v: %w", norm, err)
	}
	s.ranges = norm
	return nil
}

// Ranges returns the node's pod CIDRs as last set.
func (s *Store) Ranges() []netip.Prefix {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.ranges)
}

// normalizeRanges checks that ranges are usable pod CIDRs and returns them
// masked (10.244.1.5/24 becomes 10.244.1.0/24).
func normalizeRanges(ranges []netip.Prefix) ([]netip.Prefix, error) {
	var norm []netip.Prefix
	var have4, have6 bool
	for _, r := range ranges {
		if !r.IsValid() {
			return nil, fmt.Errorf("invalid pod CIDR %v", r)
		}
		if r.Addr().Is4In6() {
			return nil, fmt.Errorf("pod CIDR %s: IPv4-mapped IPv6 ranges are not supported; use the IPv4 form", r)
		}
		// The network address, the gateway and (IPv4) the broadcast address
		// are reserved, so a range needs room for at least one more.
		is4 := r.Addr().Is4()
		maxBits := 126
		if is4 {
			maxBits = 30
		}
		if r.Bits() > maxBits {
			return nil, fmt.Errorf("pod CIDR %s is too small: need a prefix length of at most /%d", r, maxBits)
		}
		if (is4 && have4) || (!is4 && have6) {
			return nil, fmt.Errorf("pod CIDRs %v: at most one IPv4 and one IPv6 range", ranges)
		}
		have4 = have4 || is4
		have6 = have6 || !is4
		norm = append(norm, r.Masked())
	}
	return norm, nil
}

// loadRanges reads the stored ranges; none is not an error.
func loadRanges(tx *bolt.Tx) ([]netip.Prefix, error) {
	b := tx.Bucket([]byte(bucketMeta)).Get([]byte(keyRanges))
	if b == nil {
		return nil, nil
	}
	var ranges []netip.Prefix
	if err := json.Unmarshal(b, &ranges); err != nil {
		return nil, fmt.Errorf("decode stored pod CIDRs: %w", err)
	}
	return ranges, nil
}
