package mesh

import (
	"bytes"
	"net"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/netipx"
)

// AppliedPeer is a peer as the device holds it, in the terms PeerChanges
// compares: its allowed IPs (sorted, SortPrefixes) and endpoint (unmapped;
// invalid when it has none).
type AppliedPeer struct {
	AllowedIPs []netip.Prefix
	Endpoint   netip.AddrPort
}

// AppliedPeers converts the device's peers, as wgctrl reads them, into
// AppliedPeers by key.
func AppliedPeers(actual []wgtypes.Peer) map[wgtypes.Key]AppliedPeer {
	out := make(map[wgtypes.Key]AppliedPeer, len(actual))
	for _, p := range actual {
		a := AppliedPeer{AllowedIPs: ipNetsToPrefixes(p.AllowedIPs)}
		SortPrefixes(a.AllowedIPs)
		if p.Endpoint != nil {
			a.Endpoint = netipx.UnmapAddrPort(p.Endpoint.AddrPort())
		}
		out[p.PublicKey] = a
	}
	return out
}

// PeerChanges turns the difference between desired peers and the device's
// actual peers into one wgctrl configuration. It returns an empty config
// (no peers) when nothing needs to change, so the caller can skip the write.
//
// A peer's endpoint is set to endpoint(its key) when that differs from the
// device's, and left alone when endpoint is nil or returns an invalid
// address. (wirelaced gives every peer a virtual endpoint, and its Bind
// chooses the real path; the endpoint is a function of the key, so the
// topology itself carries none.)
func PeerChanges(desired []Node, actual []wgtypes.Peer, endpoint func(wgtypes.Key) netip.AddrPort) wgtypes.Config {
	return PeerChangesFrom(desired, AppliedPeers(actual), endpoint)
}

// PeerChangesFrom is PeerChanges against peers already converted (or
// remembered from earlier writes, RecordConfig), so that a reconcile need
// not read every peer back from the device to change one. Removals come
// last, ordered by key.
func PeerChangesFrom(desired []Node, have map[wgtypes.Key]AppliedPeer, endpoint func(wgtypes.Key) netip.AddrPort) wgtypes.Config {
	want := make(map[wgtypes.Key]bool, len(desired))
	var cfg wgtypes.Config
	for _, n := range desired {
		want[n.PublicKey] = true
		cur, exists := have[n.PublicKey]
		pc := wgtypes.PeerConfig{PublicKey: n.PublicKey}
		changed := !exists
		if allowed := n.WireGuardAllowedIPs(); !exists || !sameSortedPrefixes(cur.AllowedIPs, allowed) {
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = prefixesToIPNets(allowed)
			changed = true
		}
		var want netip.AddrPort
		if endpoint != nil {
			want = endpoint(n.PublicKey)
		}
		if want.IsValid() && (!cur.Endpoint.IsValid() || cur.Endpoint != netipx.UnmapAddrPort(want)) {
			pc.Endpoint = net.UDPAddrFromAddrPort(want)
			changed = true
		}
		if changed {
			cfg.Peers = append(cfg.Peers, pc)
		}
	}
	var gone []wgtypes.Key
	for k := range have {
		if !want[k] {
			gone = append(gone, k)
		}
	}
	slices.SortFunc(gone, func(a, b wgtypes.Key) int { return bytes.Compare(a[:], b[:]) })
	for _, k := range gone {
		cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: k, Remove: true})
	}
	return cfg
}

// RecordConfig updates have with what cfg, once written to the device,
// changed, so that have stays what reading the device would return.
func RecordConfig(have map[wgtypes.Key]AppliedPeer, cfg wgtypes.Config) {
	for _, pc := range cfg.Peers {
		if pc.Remove {
			delete(have, pc.PublicKey)
			continue
		}
		a := have[pc.PublicKey]
		if pc.ReplaceAllowedIPs {
			a.AllowedIPs = ipNetsToPrefixes(pc.AllowedIPs)
			SortPrefixes(a.AllowedIPs)
		} else if len(pc.AllowedIPs) > 0 {
			a.AllowedIPs = append(slices.Clone(a.AllowedIPs), ipNetsToPrefixes(pc.AllowedIPs)...)
			SortPrefixes(a.AllowedIPs)
			a.AllowedIPs = slices.Compact(a.AllowedIPs)
		}
		if pc.Endpoint != nil {
			a.Endpoint = netipx.UnmapAddrPort(pc.Endpoint.AddrPort())
		}
		have[pc.PublicKey] = a
	}
}

// RouteChanges returns the prefixes to add and to delete to turn actual into
// desired.
func RouteChanges(desired, actual []netip.Prefix) (add, del []netip.Prefix) {
	want := map[netip.Prefix]bool{}
	for _, p := range desired {
		want[p] = true
	}
	have := map[netip.Prefix]bool{}
	for _, p := range actual {
		have[p] = true
		if !want[p] {
			del = append(del, p)
		}
	}
	for _, p := range desired {
		if !have[p] {
			add = append(add, p)
			have[p] = true
		}
	}
	SortPrefixes(add)
	SortPrefixes(del)
	return add, del
}

// sameSortedPrefixes reports whether sorted holds the same prefixes as b,
// in any order. It sorts a copy of b only when b is not sorted already
// (a peer has two or three).
func sameSortedPrefixes(sorted, b []netip.Prefix) bool {
	if len(sorted) != len(b) {
		return false
	}
	if !slices.IsSortedFunc(b, comparePrefixes) {
		b = slices.Clone(b)
		SortPrefixes(b)
	}
	return slices.Equal(sorted, b)
}

func samePrefixes(a, b []netip.Prefix) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	SortPrefixes(a)
	SortPrefixes(b)
	return slices.Equal(a, b)
}

func ipNetsToPrefixes(nets []net.IPNet) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(nets))
	for _, n := range nets {
		a, _ := netip.AddrFromSlice(n.IP)
		ones, _ := n.Mask.Size()
		out = append(out, netip.PrefixFrom(a.Unmap(), ones))
	}
	return out
}

func prefixesToIPNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(ps))
	for _, p := range ps {
		out = append(out, net.IPNet{
			IP:   net.IP(p.Addr().AsSlice()),
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		})
	}
	return out
}
