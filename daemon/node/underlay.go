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

// hostAddrs returns the node's global unicast addresses, with their
// prefix lengths: the host endpoint candidates, and (masked) the subnets on
// which a peer counts as on the same network. Loopback, the mesh interface
// itself and link-local addresses (which a peer on another link could not
// use) are skipped. IPv4 comes first: on dual-stack underlays it is the
// family most likely to work between sites.
func hostAddrs(skip string) ([]netip.Prefix, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []netip.Prefix
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
			if !ok || ad.IPNet == nil {
				continue
			}
			ip = ip.Unmap()
			if !ip.IsGlobalUnicast() || ip.IsLinkLocalUnicast() {
				continue
			}
			ones, _ := ad.Mask.Size()
			out = append(out, netip.PrefixFrom(ip, ones))
		}
	}
	slices.SortStableFunc(out, func(a, b netip.Prefix) int {
		switch {
		case a.Addr().Is4() && !b.Addr().Is4():
			return -1
		case !a.Addr().Is4() && b.Addr().Is4():
			return 1
		}
		return a.Addr().Compare(b.Addr())
	})
	return out, errors.Join(errs...)
}

// addrsOf returns the addresses of prefixes.
func addrsOf(ps []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, len(ps))
	for i, p := range ps {
		out[i] = p.Addr()
	}
	return out
}

// subnetsOf returns the networks of prefixes.
func subnetsOf(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Masked()
	}
	return out
}
