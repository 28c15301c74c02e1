package podnet

import (
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// In chained mode the primary CNI owns the pod's interface, so its MTU is
// left as the primary set it (the prevResult says so, and must stay true).
// What must fit the tunnel is traffic that leaves the node: that goes
// through a gateway, so each gateway route of the pod interface gets the
// mesh MTU as a route metric, which is what the kernel uses for path MTU
// and TCP's MSS. Same-node traffic (on-link routes) keeps the interface's
// MTU. Cilium's enableRouteMTUForCNIChaining does the same.

// SetRouteMTU gives every gateway route through ifName in netns (both
// families, main table) an MTU of at most mtu. Routes already at or below
// it are left alone, so a repeated ADD writes nothing.
func SetRouteMTU(netNS ns.NetNS, ifName string, mtu int) error {
	return netNS.Do(func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("look up %s in pod netns %s: %w", ifName, netNS.Path(), err)
		}
		routes, err := gatewayRoutes(link)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.MTU != 0 && r.MTU <= mtu {
				continue
			}
			r.MTU = mtu
			if err := netlink.RouteReplace(&r); err != nil {
				return fmt.Errorf("set MTU %d on route %s via %s dev %s: %w", mtu, dstString(r.Dst), r.Gw, ifName, err)
			}
		}
		return nil
	})
}

// CheckRouteMTU says what is wrong with the gateway routes of ifName in
// netns: none at all (the pod could not leave the node), or one whose MTU
// exceeds mtu.
func CheckRouteMTU(netNS ns.NetNS, ifName string, mtu int) error {
	return netNS.Do(func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("pod interface %s missing in netns %s: %w", ifName, netNS.Path(), err)
		}
		routes, err := gatewayRoutes(link)
		if err != nil {
			return err
		}
		if len(routes) == 0 {
			return fmt.Errorf("pod interface %s has no route through a gateway: the primary CNI's routes are gone", ifName)
		}
		for _, r := range routes {
			if r.MTU == 0 || r.MTU > mtu {
				return fmt.Errorf("route %s via %s dev %s has MTU %d, want at most the mesh's %d", dstString(r.Dst), r.Gw, ifName, r.MTU, mtu)
			}
		}
		return nil
	})
}

// gatewayRoutes lists the main-table routes through link that have a
// gateway, both families.
func gatewayRoutes(link netlink.Link) ([]netlink.Route, error) {
	all, err := netlinksafe.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes of %s: %w", link.Attrs().Name, err)
	}
	var out []netlink.Route
	for _, r := range all {
		if r.Gw != nil && r.Type == unix.RTN_UNICAST {
			out = append(out, r)
		}
	}
	return out, nil
}

func dstString(dst *net.IPNet) string {
	if dst == nil {
		return "default"
	}
	return dst.String()
}
