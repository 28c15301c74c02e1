// Package netipx holds the small net/netip helpers that several Wirelace
// packages need and the standard library lacks.
package netipx

import "net/netip"

// LastAddr is the last address of p (its broadcast address, for IPv4).
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// UnmapAddrPort returns ap with an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
// as plain IPv4. Dual-stack sockets report IPv4 peers that way, and
// netip.AddrPort has no Unmap of its own, so without it the same peer would
// compare unequal to itself.
func UnmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
