package podnet

import (
	"errors"
	"fmt"
	"net"
	"strings"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// Check verifies that the attachment is still as prev (the result of its
// ADD, which the runtime cached) describes it: the host veth and its routes
// in the host netns, the pod interface with its addresses, MTU and default
// routes in the pod's. The error lists everything that is wrong.
func Check(a Attachment, prev *types100.Result) error {
	hostName := a.HostVeth()
	hostIdx, podIdx := -1, -1
	for i, iface := range prev.Interfaces {
		switch {
		case iface.Sandbox == "" && iface.Name == hostName:
			hostIdx = i
		case iface.Sandbox != "" && iface.Name == a.IfName:
			podIdx = i
		}
	}
	if hostIdx < 0 || podIdx < 0 {
		return fmt.Errorf("prevResult does not describe a Wirelace attachment (want host interface %s and pod interface %s): was it made by this plugin?", hostName, a.IfName)
	}
	var ips []*types100.IPConfig
	for _, ip := range prev.IPs {
		if ip.Interface == nil || *ip.Interface == podIdx {
			ips = append(ips, ip)
		}
	}

	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	host, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		if !isNotFound(err) {
			return fmt.Errorf("look up host veth %s: %w", hostName, err)
		}
		fail("host veth %s missing", hostName)
	} else {
		checkHost(host, ips, fail)
	}

	err = a.NetNS.Do(func(ns.NetNS) error {
		return checkPod(a, host, prev.Interfaces[podIdx].Mtu, ips, fail)
	})
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func checkHost(host netlink.Link, ips []*types100.IPConfig, fail func(string, ...any)) {
	name := host.Attrs().Name
	if _, ok := host.(*netlink.Veth); !ok {
		fail("host link %s is a %s, not a veth", name, host.Type())
		return
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		fail("host veth %s is down", name)
	}
	for _, ip := range ips {
		dst := single(ip.Address.IP)
		if !hasRoute(host, dst, nil) {
			fail("host route %s via %s missing", dst, name)
		}
		if ip.Address.IP.To4() == nil && !hasAddr(host, net.ParseIP(GatewayV6)) {
			fail("host veth %s lacks the pods' IPv6 gateway %s", name, GatewayV6)
		}
	}
}

func checkPod(a Attachment, host netlink.Link, mtu int, ips []*types100.IPConfig, fail func(string, ...any)) error {
	pod, err := netlinksafe.LinkByName(a.IfName)
	if err != nil {
		if !isNotFound(err) {
			return fmt.Errorf("look up %s in pod netns %s: %w", a.IfName, a.NetNS.Path(), err)
		}
		fail("pod interface %s missing in netns %s", a.IfName, a.NetNS.Path())
		return nil
	}
	if _, ok := pod.(*netlink.Veth); !ok {
		fail("pod interface %s is a %s, not a veth", a.IfName, pod.Type())
	} else if host != nil && pod.Attrs().ParentIndex != host.Attrs().Index {
		fail("pod interface %s is not the peer of host veth %s", a.IfName, host.Attrs().Name)
	}
	if pod.Attrs().Flags&net.FlagUp == 0 {
		fail("pod interface %s is down", a.IfName)
	}
	if mtu != 0 && pod.Attrs().MTU != mtu {
		fail("pod interface %s has MTU %d, expected %d", a.IfName, pod.Attrs().MTU, mtu)
	}
	for _, ip := range ips {
		if !hasAddrPrefix(pod, &ip.Address) {
			fail("pod interface %s lacks address %s", a.IfName, ip.Address.String())
		}
		gw := gateway(ip.Address.IP)
		if !hasRoute(pod, defaultDst(gw), gw) {
			fail("default route via %s dev %s missing in the pod netns", gw, a.IfName)
		}
	}
	return nil
}

// hasRoute says whether the current netns routes dst through link (via gw,
// if gw is not nil).
func hasRoute(link netlink.Link, dst *net.IPNet, gw net.IP) bool {
	family := netlink.FAMILY_V6
	if dst.IP.To4() != nil {
		family = netlink.FAMILY_V4
	}
	routes, err := netlinksafe.RouteList(link, family)
	if err != nil {
		return false
	}
	for _, r := range routes {
		if r.LinkIndex != link.Attrs().Index || (gw != nil && !r.Gw.Equal(gw)) {
			continue
		}
		if ip.IsIPNetZero(dst) && ip.IsIPNetZero(r.Dst) {
			return true
		}
		if r.Dst != nil && r.Dst.String() == dst.String() {
			return true
		}
	}
	return false
}

func hasAddr(link netlink.Link, ip net.IP) bool {
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func hasAddrPrefix(link netlink.Link, want *net.IPNet) bool {
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IPNet.String() == want.String() {
			return true
		}
	}
	return false
}
