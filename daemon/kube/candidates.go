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

// Candidates lists the prefixes of length bits inside pool to try, in an
// order that starts at a point derived from seed (the node name): single
// addresses for mesh IPs (bits = 32 or 128), blocks for pod CIDRs. Starting
// nodes at different offsets makes collisions rare, but uniqueness never
// depends on that: every candidate is claimed by an atomic create.
//
// For single addresses the zero host is skipped (IPv4 network address, IPv6
// subnet-router anycast) and, for IPv4, the broadcast address.
func Candidates(pool netip.Prefix, bits int, seed string, limit int) []netip.Prefix {
	pool = pool.Masked()
	addrBits := pool.Addr().BitLen()
	if bits < pool.Bits() || bits > addrBits {
		return nil
	}
	count := new(big.Int).Lsh(big.NewInt(1), uint(bits-pool.Bits()))
	first := big.NewInt(0)
	usable := new(big.Int).Set(count)
	if bits == addrBits {
		first.SetInt64(1)
		usable.Sub(usable, big.NewInt(1))
		if pool.Addr().Is4() && count.Cmp(big.NewInt(4)) >= 0 {
			usable.Sub(usable, big.NewInt(1))
		}
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
	out := make([]netip.Prefix, 0, n)
	idx := new(big.Int)
	for i := 0; i < n; i++ {
		idx.Add(start, big.NewInt(int64(i)))
		idx.Mod(idx, usable)
		idx.Add(idx, first)
		v := new(big.Int).Lsh(idx, uint(addrBits-bits))
		a := addrFromInt(v.Add(v, base), pool.Addr().Is4())
		out = append(out, netip.PrefixFrom(a, bits))
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
