package ipam

import "net/netip"

// Gateway returns the gateway address of a range: its first host address.
// It is reserved (never allocated), as are the network address and, for
// IPv4, the broadcast address.
func Gateway(r netip.Prefix) netip.Addr { return r.Masked().Addr().Next() }

// usable returns the first and last address of r that may be handed out.
// Validated ranges (see normalizeRanges) always have first <= last.
func usable(r netip.Prefix) (first, last netip.Addr) {
	first = Gateway(r).Next()
	last = lastAddr(r)
	if r.Addr().Is4() {
		last = last.Prev() // the broadcast address
	}
	return first, last
}

// lastAddr returns the highest address of r.
func lastAddr(r netip.Prefix) netip.Addr {
	b := r.Masked().Addr().AsSlice()
	for i := range b {
		if n := r.Bits() - 8*i; n < 8 {
			b[i] |= 0xff >> max(n, 0)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// addrKey is an address as an index key: 4 bytes for IPv4, 16 for IPv6,
// big-endian, so keys sort as the addresses do.
func addrKey(a netip.Addr) []byte { return a.AsSlice() }

// usedBucket names the used-address index of a's family.
func usedBucket(a netip.Addr) []byte {
	if a.Is4() {
		return []byte(bucketUsed4)
	}
	return []byte(bucketUsed6)
}
