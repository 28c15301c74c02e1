// Package routes applies the mesh's routes and addresses to the WireGuard
// link through netlink. Every route it installs carries Protocol, so it only
// ever changes or removes routes it made itself.
package routes

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wirelace/wirelace/daemon/mesh"
)

// MainTable is the kernel's main routing table, where the mesh's routes to
// mesh IPs and pod CIDRs live.
const MainTable = unix.RT_TABLE_MAIN

// Protocol is the route protocol number marking wirelaced's routes
// (`ip route show proto 119`). Any value not in /etc/iproute2/rt_protos
// would do; it only has to be ours alone.
const Protocol netlink.RouteProtocol = 119

// Sync makes the routes with Protocol on the link in table exactly desired
// and returns what it changed. It never touches a route it did not make:
// deletes are of routes carrying Protocol only, and adds are exclusive, so
// a route someone else owns for the same destination (a default route, an
// operator's static route, a pod's host route) is left as it is and
// reported in taken, not replaced. A route that fails to apply is reported
// in err but does not stop the others.
func Sync(linkIndex, table int, desired []netip.Prefix) (added, removed, taken []netip.Prefix, err error) {
	actual, err := List(linkIndex, table)
	if err != nil {
		return nil, nil, nil, err
	}
	add, del := mesh.RouteChanges(desired, actual)
	return Apply(linkIndex, table, add, del)
}

// Apply deletes del and adds add, our routes on the link in table, as Sync
// does once it has listed the table: a caller that remembers what it
// applied (and so knows add and del without a listing of every route) can
// change one route for the cost of one. The same rules hold: deletes carry
// Protocol, so they only ever remove our own routes, and adds are
// exclusive, so a route someone else owns is reported in taken and left
// alone.
func Apply(linkIndex, table int, add, del []netip.Prefix) (added, removed, taken []netip.Prefix, err error) {
	var errs []error
	for _, p := range del {
		if err := netlink.RouteDel(route(linkIndex, table, p)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", p, err))
			continue
		}
		removed = append(removed, p)
	}
	for _, p := range add {
		err := netlink.RouteAdd(route(linkIndex, table, p))
		switch {
		case errors.Is(err, unix.EEXIST):
			taken = append(taken, p)
		case err != nil:
			errs = append(errs, fmt.Errorf("add route %s: %w", p, err))
		default:
			added = append(added, p)
		}
	}
	return added, removed, taken, errors.Join(errs...)
}

// List returns the destinations of our routes on the link in table, both
// families.
func List(linkIndex, table int) ([]netip.Prefix, error) {
	filter := &netlink.Route{LinkIndex: linkIndex, Protocol: Protocol, Table: table}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter,
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []netip.Prefix
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		a, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		out = append(out, netip.PrefixFrom(a.Unmap(), ones))
	}
	return out, nil
}

func route(linkIndex, table int, p netip.Prefix) *netlink.Route {
	return &netlink.Route{
		LinkIndex: linkIndex,
		Dst:       ipNet(p),
		Scope:     netlink.SCOPE_LINK,
		Protocol:  Protocol,
		Table:     table,
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// EnsureAddrs puts the node's mesh IPs on the link as host addresses. They
// carry no prefix route: reachability of each peer comes from its own
// routes, matching its AllowedIPs.
func EnsureAddrs(linkIndex int, addrs []netip.Addr) error {
	link, err := netlink.LinkByIndex(linkIndex)
	if err != nil {
		return fmt.Errorf("find link %d: %w", linkIndex, err)
	}
	for _, a := range addrs {
		addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, a.BitLen()))}
		if a.Is6() {
			// No duplicate address detection: the address is unique by
			// claim, and DAD would delay it by seconds on every start.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("add address %s to %s: %w", a, link.Attrs().Name, err)
		}
	}
	return nil
}
