package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// wireGuardOverhead is what WireGuard adds to each packet in the worst case:
// outer IPv6 (40) + UDP (8) + WireGuard header (16) + auth tag (16).
const wireGuardOverhead = 80

// fallbackMTU is used when no underlay interface can be found, e.g. a node
// whose only route is added after the daemon starts.
const fallbackMTU = 1420

// underlayMTU returns the MTU of the interface carrying the default route,
// else the largest MTU of any other up interface.
func underlayMTU(skip string) int {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteList(nil, family)
		if err != nil {
			continue
		}
		for _, r := range routes {
			if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
				continue
			}
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().Name != skip {
				return l.Attrs().MTU
			}
		}
	}
	best := 0
	links, _ := netlink.LinkList()
	for _, l := range links {
		a := l.Attrs()
		if a.Name == skip || a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 {
			continue
		}
		best = max(best, a.MTU)
	}
	return best
}

// meshMTU is the MTU for the WireGuard interface (and, later, pods).
func meshMTU(configured int, iface string) int {
	if configured != 0 {
		return configured
	}
	if u := underlayMTU(iface); u > 0 {
		return u - wireGuardOverhead
	}
	return fallbackMTU
}

// hostAddrs returns the node's global unicast addresses, the host endpoint
// candidates, skipping loopback, the mesh interface itself and link-local
// addresses (which a peer on another link could not use).
func hostAddrs(skip string) ([]netip.Addr, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []netip.Addr
	var errs []error
	for _, l := range links {
		a := l.Attrs()
		if a.Name == skip || a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			errs = append(errs, fmt.Errorf("list addresses of %s: %w", a.Name, err))
			continue
		}
		for _, ad := range addrs {
			ip, ok := netip.AddrFromSlice(ad.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if !ip.IsGlobalUnicast() || ip.IsLinkLocalUnicast() {
				continue
			}
			out = append(out, ip)
		}
	}
	// IPv4 first: on dual-stack underlays it is the family most likely to
	// work between sites.
	slices.SortStableFunc(out, func(a, b netip.Addr) int {
		switch {
		case a.Is4() && !b.Is4():
			return -1
		case !a.Is4() && b.Is4():
			return 1
		}
		return a.Compare(b)
	})
	return out, errors.Join(errs...)
}

// hostPrefixes are the subnets of the node's host addresses: a peer with a
// host candidate inside one is on the same network.
func hostPrefixes(skip string) []netip.Prefix {
	links, err := netlink.LinkList()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, l := range links {
		a := l.Attrs()
		if a.Name == skip || a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
		for _, ad := range addrs {
			ip, ok := netip.AddrFromSlice(ad.IP)
			if !ok || ad.IPNet == nil {
				continue
			}
			ones, _ := ad.Mask.Size()
			if p := netip.PrefixFrom(ip.Unmap(), ones).Masked(); p.Addr().IsGlobalUnicast() {
				out = append(out, p)
			}
		}
	}
	return out
}
