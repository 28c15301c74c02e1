package kube

import (
	"hash/fnv"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
)

// maxClaimAttempts bounds how many taken addresses a claim steps over before
// it reports the pool as full, so a tiny or exhausted pool fails clearly
// instead of spinning.
const maxClaimAttempts = 4096

// Candidates lists host addresses of pool to try, in an order that starts at
// a point derived from seed (the node name). Starting nodes at different
// offsets makes collisions rare, but uniqueness never depends on that: every
// candidate is claimed by an atomic create.
//
// For IPv4 the network and broadcast addresses are skipped; for IPv6 the
// all-zero host (the subnet-router anycast address).
func Candidates(pool netip.Prefix, seed string, limit int) []netip.Addr {
	pool = pool.Masked()
	hostBits := pool.Addr().BitLen() - pool.Bits()
	size := new(big.Int).Lsh(big.NewInt(1), uint(hostBits))
	usable := new(big.Int).Sub(size, big.NewInt(1)) // minus the zero host
	if pool.Addr().Is4() && hostBits >= 2 {
		usable.Sub(usable, big.NewInt(1)) // minus broadcast
	}
	if usable.Sign() <= 0 {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte(seed))
	start := new(big.Int).Mod(new(big.Int).SetUint64(h.Sum64()), usable)

	n := limit
	if usable.IsInt64() && usable.Int64() < int64(n) {
		n = int(usable.Int64())
	}
	base := new(big.Int).SetBytes(pool.Addr().AsSlice())
	out := make([]netip.Addr, 0, n)
	off := new(big.Int)
	for i := 0; i < n; i++ {
		off.Add(start, big.NewInt(int64(i)))
		off.Mod(off, usable)
		off.Add(off, big.NewInt(1)) // host numbers start at 1
		a := addrFromInt(new(big.Int).Add(base, off), pool.Addr().Is4())
		out = append(out, a)
	}
	return out
}

func addrFromInt(v *big.Int, is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		v.FillBytes(b[:])
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	v.FillBytes(b[:])
	return netip.AddrFrom16(b)
}

// ClaimName is the IPClaim object name for a prefix. Two claims for the same
// prefix get the same name, which is what makes a create atomic proof of
// ownership. Names are valid DNS subdomains: IPv6 colons become dashes.
func ClaimName(p netip.Prefix) string {
	s := strings.ReplaceAll(p.Masked().Addr().String(), ":", "-")
	if strings.HasPrefix(s, "-") {
		s = "0" + s
	}
	if strings.HasSuffix(s, "-") {
		s += "0"
	}
	return s + "-" + strconv.Itoa(p.Bits())
}
