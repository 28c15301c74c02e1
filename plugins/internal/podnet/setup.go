package podnet

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wirelace/wirelace/internal/sysctl"
)

// Attachment is one pod interface to make or check.
type Attachment struct {
	ContainerID string
	IfName      string
	// NetNS is the pod's network namespace.
	NetNS ns.NetNS
	// IPs are the pod's addresses, at most one per family.
	IPs []net.IP
	// MTU of both veth ends.
	MTU int
}

// HostVeth is the name of the attachment's host-side veth.
func (a Attachment) HostVeth() string { return HostVethName(a.ContainerID, a.IfName) }

// ValidateMTU refuses an MTU the pod's addresses cannot live with: the
// kernel drops IPv6 from a link whose MTU is below 1280, which would
// otherwise surface as a puzzling "address add: permission denied".
func ValidateMTU(mtu int, ips []net.IP) error {
	if _, v6 := families(ips); v6 && mtu < 1280 {
		return fmt.Errorf("MTU %d is below IPv6's minimum of 1280 but the pod gets an IPv6 address: raise the mtu (in the network config or wirelaced's)", mtu)
	}
	return nil
}

// Setup makes the attachment, or finishes and returns it if it already
// exists (a repeated ADD). existed tells whether the veth was there before:
// on error, Setup removes the veth only if it made it.
func Setup(a Attachment) (res *types100.Result, existed bool, err error) {
	host, existed, err := ensureVeth(a)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if err != nil && !existed {
			if delErr := netlink.LinkDel(host); delErr != nil && !isNotFound(delErr) {
				err = fmt.Errorf("%w (and removing veth %s failed: %v)", err, a.HostVeth(), delErr)
			}
		}
	}()
	if err := configureHost(a, host); err != nil {
		return nil, existed, fmt.Errorf("configure host veth %s: %w", a.HostVeth(), err)
	}
	var podLink netlink.Link
	err = a.NetNS.Do(func(ns.NetNS) error {
		var err error
		podLink, err = configurePod(a, host.Attrs().HardwareAddr)
		return err
	})
	if err != nil {
		return nil, existed, fmt.Errorf("configure %s in pod netns %s: %w", a.IfName, a.NetNS.Path(), err)
	}
	return result(a, host, podLink), existed, nil
}

// ensureVeth returns the attachment's veth pair, making it if it is not
// there. A veth with the attachment's name whose peer is not the pod's
// interface is a leftover of an earlier sandbox with the same container ID
// and interface: it is replaced.
func ensureVeth(a Attachment) (netlink.Link, bool, error) {
	name := a.HostVeth()
	link, err := netlinksafe.LinkByName(name)
	switch {
	case err == nil:
		veth, ok := link.(*netlink.Veth)
		if !ok {
			return nil, false, fmt.Errorf("the host netns has a %s link named %s, which is not a Wirelace veth: remove it (ip link del %s) and retry", link.Type(), name, name)
		}
		if peerIsPodLink(a, veth) {
			return veth, true, nil
		}
		if err := netlink.LinkDel(veth); err != nil && !isNotFound(err) {
			return nil, false, fmt.Errorf("remove stale veth %s: %w", name, err)
		}
	case !isNotFound(err):
		return nil, false, fmt.Errorf("look up %s: %w", name, err)
	}

	// Say clearly when the pod already has an interface by that name; the
	// kernel would only say "file exists".
	err = a.NetNS.Do(func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(a.IfName)
		if err == nil {
			return fmt.Errorf("pod netns %s already has a %s interface named %s (CNI_IFNAME): is another network attached with that name?", a.NetNS.Path(), l.Type(), a.IfName)
		}
		if !isNotFound(err) {
			return fmt.Errorf("look up %s in pod netns %s: %w", a.IfName, a.NetNS.Path(), err)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}

	// Made from the pod netns with the host end placed straight into the
	// host's: one netlink request, so no half-made pair can be left in
	// either netns. Do hands the callback the netns it was called from.
	err = a.NetNS.Do(func(hostNS ns.NetNS) error {
		_, _, err := ip.SetupVethWithName(a.IfName, name, a.MTU, "", hostNS)
		return err
	})
	if err == nil {
		link, err = netlinksafe.LinkByName(name)
	}
	if err != nil {
		// The name was free above, so a link by that name now is the pair
		// just made, left by a step after its creation that failed.
		if l, lookupErr := netlinksafe.LinkByName(name); lookupErr == nil {
			_ = netlink.LinkDel(l)
		}
		return nil, false, fmt.Errorf("create veth pair %s (host) / %s (pod) with MTU %d: %w", name, a.IfName, a.MTU, err)
	}
	return link, false, nil
}

// peerIsPodLink says whether host's peer is the pod's interface IfName.
func peerIsPodLink(a Attachment, host *netlink.Veth) bool {
	if id, err := netlink.GetNetNsIdByFd(int(a.NetNS.Fd())); err == nil && id >= 0 && host.NetNsID != id {
		return false
	}
	match := false
	_ = a.NetNS.Do(func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(a.IfName)
		if err != nil {
			return nil
		}
		_, isVeth := l.(*netlink.Veth)
		match = isVeth && l.Attrs().ParentIndex == host.Attrs().Index && host.Attrs().ParentIndex == l.Attrs().Index
		return nil
	})
	return match
}

// configureHost sets up the host end: up, the pod's MTU, the link-local
// gateways answered, a host route to each pod address, forwarding on.
func configureHost(a Attachment, host netlink.Link) error {
	name := host.Attrs().Name
	v4, v6 := families(a.IPs)
	if v4 {
		// The pod's permanent neighbour entry makes 169.254.1.1 work on its
		// own; proxy_arp (answered at once, not after proxy_delay's random
		// wait of up to 0.8 s) covers a pod whose neighbour table was
		// flushed. It needs a host route to 169.254.1.1 that does not go
		// back out of this veth, such as the node's default route.
		if err := sysctl.Set(filepath.Join("net/ipv4/conf", name, "proxy_arp"), "1"); err != nil {
			return err
		}
		if err := sysctl.Set(filepath.Join("net/ipv4/neigh", name, "proxy_delay"), "0"); err != nil {
			return err
		}
	}
	if v6 {
		if err := sysctl.Set(filepath.Join("net/ipv6/conf", name, "disable_ipv6"), "0"); err != nil {
			return fmt.Errorf("wirelaced gave the pod an IPv6 address but IPv6 is unavailable in the host netns: %w", err)
		}
		// A router port: it must not pick up addresses or routes from
		// whatever a pod advertises.
		if err := sysctl.Set(filepath.Join("net/ipv6/conf", name, "accept_ra"), "0"); err != nil {
			return err
		}
	}
	if host.Attrs().MTU != a.MTU {
		if err := netlink.LinkSetMTU(host, a.MTU); err != nil {
			return fmt.Errorf("set MTU %d: %w", a.MTU, err)
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	if v6 {
		// The pod's IPv6 gateway. No DAD: the address is on every host veth
		// by design, and DAD would delay the pod's first packets.
		gw := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(GatewayV6), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrAdd(host, gw); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("add %s: %w", GatewayV6, err)
		}
	}
	for _, ip := range a.IPs {
		// Replace, not add: the daemon gave this address to this pod, so a
		// route to it through another device can only be a leftover.
		r := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: single(ip), Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("add host route %s dev %s: %w", single(ip), name, err)
		}
	}
	// The host routes the pod's traffic to the mesh and beyond.
	return sysctl.EnableForwarding(v4, v6)
}

// configurePod sets up the pod end, from inside the pod netns: addresses as
// /32 and /128 (everything goes to the host, nothing is on-link), the
// link-local gateway, default routes through it.
func configurePod(a Attachment, hostMAC net.HardwareAddr) (netlink.Link, error) {
	link, err := netlinksafe.LinkByName(a.IfName)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", a.IfName, err)
	}
	v4, v6 := families(a.IPs)
	if v6 {
		if err := sysctl.Set(filepath.Join("net/ipv6/conf", a.IfName, "disable_ipv6"), "0"); err != nil {
			return nil, fmt.Errorf("wirelaced gave the pod an IPv6 address but IPv6 is disabled in the pod netns: %w", err)
		}
	}
	if link.Attrs().MTU != a.MTU {
		if err := netlink.LinkSetMTU(link, a.MTU); err != nil {
			return nil, fmt.Errorf("set MTU %d: %w", a.MTU, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %s up: %w", a.IfName, err)
	}
	for _, ip := range a.IPs {
		addr := &netlink.Addr{IPNet: single(ip)}
		if ip.To4() == nil {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("add address %s: %w", addr.IPNet, err)
		}
	}
	if v4 {
		gw := gateway(net.IPv4zero)
		onLink := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: single(gw), Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteReplace(onLink); err != nil {
			return nil, fmt.Errorf("add route %s dev %s: %w", single(gw), a.IfName, err)
		}
		neigh := &netlink.Neigh{
			LinkIndex:    link.Attrs().Index,
			Family:       netlink.FAMILY_V4,
			State:        netlink.NUD_PERMANENT,
			IP:           gw,
			HardwareAddr: hostMAC,
		}
		if err := netlink.NeighSet(neigh); err != nil {
			return nil, fmt.Errorf("add neighbour %s lladdr %s: %w", gw, hostMAC, err)
		}
		if err := addDefaultRoute(link, gw); err != nil {
			return nil, err
		}
	}
	if v6 {
		if err := addDefaultRoute(link, gateway(net.IPv6zero)); err != nil {
			return nil, err
		}
	}
	// Re-read for the MAC and the MTU as they are now.
	return netlinksafe.LinkByName(a.IfName)
}

// addDefaultRoute adds "default via gw dev link". It does not replace a
// default route that goes elsewhere: that belongs to another network of the
// pod, and Wirelace standalone must be the pod's primary network.
func addDefaultRoute(link netlink.Link, gw net.IP) error {
	err := ip.AddDefaultRoute(gw, link)
	if err == nil || !errors.Is(err, syscall.EEXIST) {
		if err != nil {
			return fmt.Errorf("add default route via %s dev %s: %w", gw, link.Attrs().Name, err)
		}
		return nil
	}
	if ok, err := hasDefaultRoute(link, gw); err != nil || ok {
		return err
	}
	return fmt.Errorf("the pod netns already has a default route that is not via %s dev %s: Wirelace in standalone mode must be the pod's primary network (attach other networks without a default route)", gw, link.Attrs().Name)
}

// hasDefaultRoute says whether "default via gw dev link" exists in the
// current netns.
func hasDefaultRoute(link netlink.Link, gw net.IP) (bool, error) {
	family := netlink.FAMILY_V6
	if gw.To4() != nil {
		family = netlink.FAMILY_V4
	}
	routes, err := netlinksafe.RouteList(link, family)
	if err != nil {
		return false, fmt.Errorf("list routes of %s: %w", link.Attrs().Name, err)
	}
	for _, r := range routes {
		if ip.IsIPNetZero(r.Dst) && r.Gw.Equal(gw) && r.LinkIndex == link.Attrs().Index {
			return true, nil
		}
	}
	return false, nil
}

// result is the CNI result of a made attachment: the host veth (interface
// 0) and the pod interface (1) with its addresses, gateways and routes.
func result(a Attachment, host, pod netlink.Link) *types100.Result {
	res := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{
			{Name: host.Attrs().Name, Mac: host.Attrs().HardwareAddr.String()},
			{Name: a.IfName, Mac: pod.Attrs().HardwareAddr.String(), Mtu: pod.Attrs().MTU, Sandbox: a.NetNS.Path()},
		},
	}
	routed := map[bool]bool{} // by "is IPv4": one default route per family
	for _, ip := range a.IPs {
		gw := gateway(ip)
		res.IPs = append(res.IPs, &types100.IPConfig{Interface: types100.Int(1), Address: *single(ip), Gateway: gw})
		if v4 := ip.To4() != nil; !routed[v4] {
			routed[v4] = true
			res.Routes = append(res.Routes, &types.Route{Dst: *defaultDst(ip), GW: gw})
		}
	}
	return res
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT)
}
