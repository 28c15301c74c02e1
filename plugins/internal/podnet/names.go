// Package podnet makes, checks and removes a pod's network attachment in
// Wirelace's standalone mode: a veth pair whose pod end carries the pod's
// addresses as /32 and /128 and routes everything through the host end via
// link-local gateways, and whose host end has a host route to each address.
//
// Every function runs with the calling thread in the host network namespace
// and enters the pod's through ns.NetNS.Do.
package podnet

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
)

// HostVethPrefix starts the name of every host-side veth. The WireGuard
// device is "lace0": it never matches IsHostVethName.
const HostVethPrefix = "lace"

// hashChars is how many hex characters of the hash follow the prefix:
// 4+11 = 15, the longest interface name Linux takes.
const hashChars = 11

// The pod's gateways. They are link-local so that they need no address from
// the pod CIDR and are the same in every pod. The host answers for them on
// each host veth: IPv4 by a permanent neighbour entry in the pod (and
// proxy_arp as a fallback), IPv6 by owning fe80::1 on the veth.
const (
	GatewayV4 = "169.254.1.1"
	GatewayV6 = "fe80::1"
)

// HostVethName is the host-side name of the veth of one attachment. It is a
// function of the attachment alone, so that DEL and GC find the veth without
// any stored state, and a repeated ADD finds what an earlier one made.
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + ifName))
	return HostVethPrefix + hex.EncodeToString(sum[:])[:hashChars]
}

// IsHostVethName says whether name has the shape HostVethName gives.
func IsHostVethName(name string) bool {
	if len(name) != len(HostVethPrefix)+hashChars || name[:len(HostVethPrefix)] != HostVethPrefix {
		return false
	}
	for _, c := range name[len(HostVethPrefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// gateway returns the pod's gateway for ip's family.
func gateway(ip net.IP) net.IP {
	if ip.To4() != nil {
		return net.ParseIP(GatewayV4).To4()
	}
	return net.ParseIP(GatewayV6)
}

// single returns ip as a one-address prefix: /32 or /128.
func single(ip net.IP) *net.IPNet {
	if v4 := ip.To4(); v4 != nil {
		return &net.IPNet{IP: v4, Mask: net.CIDRMask(32, 32)}
	}
	return &net.IPNet{IP: ip.To16(), Mask: net.CIDRMask(128, 128)}
}

// defaultDst is the default route's destination for ip's family.
func defaultDst(ip net.IP) *net.IPNet {
	if ip.To4() != nil {
		return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
}

// families says which address families ips have.
func families(ips []net.IP) (v4, v6 bool) {
	for _, ip := range ips {
		if ip.To4() != nil {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}
