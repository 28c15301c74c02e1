package mesh

import (
	"net"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/netipx"
)

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
	have := map[wgtypes.Key]wgtypes.Peer{}
	for _, p := range actual {
		have[p.PublicKey] = p
	}
	want := map[wgtypes.Key]bool{}
	var cfg wgtypes.Config
	for _, n := range desired {
		want[n.PublicKey] = true
		cur, exists := have[n.PublicKey]
		pc := wgtypes.PeerConfig{PublicKey: n.PublicKey}
		changed := !exists
		if allowed := n.WireGuardAllowedIPs(); !exists || !samePrefixes(ipNetsToPrefixes(cur.AllowedIPs), allowed) {
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = prefixesToIPNets(allowed)
			changed = true
		}
		var want netip.AddrPort
		if endpoint != nil {
			want = endpoint(n.PublicKey)
		}
		if want.IsValid() && (cur.Endpoint == nil || netipx.UnmapAddrPort(cur.Endpoint.AddrPort()) != netipx.UnmapAddrPort(want)) {
			pc.Endpoint = net.UDPAddrFromAddrPort(want)
			changed = true
		}
		if changed {
			cfg.Peers = append(cfg.Peers, pc)
		}
	}
	for _, p := range actual {
		if !want[p.PublicKey] {
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: p.PublicKey, Remove: true})
		}
	}
	return cfg
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
