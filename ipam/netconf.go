package ipam

import (
	"time"

	"github.com/wirelace/wirelace/netconf"
)

// Conversions to and from the local API types, so that each of the daemon's
// IPAM handlers is a decode, one Store call and an encode. Key needs none:
// it has the same fields as netconf.AttachmentKey, so ipam.Key(k) and
// netconf.AttachmentKey(k) convert directly (this line keeps it so).
var _ = Key(netconf.AttachmentKey{})

// OwnerOf returns the owner an allocate request records.
func OwnerOf(req netconf.AllocateRequest) Owner {
	return Owner{
		Network:      req.Network,
		Netns:        req.Netns,
		PodNamespace: req.PodNamespace,
		PodName:      req.PodName,
		PodUID:       req.PodUID,
	}
}

// AllocatedIPs returns a's addresses with their range's gateway, for an
// AllocateResponse.
func (a Allocation) AllocatedIPs() []netconf.AllocatedIP {
	ips := make([]netconf.AllocatedIP, 0, len(a.IPs))
	for _, p := range a.IPs {
		ips = append(ips, netconf.AllocatedIP{Address: p.String(), Gateway: Gateway(p).String()})
	}
	return ips
}

// Netconf returns a as the local API lists it.
func (a Allocation) Netconf() netconf.Allocation {
	ips := make([]string, 0, len(a.IPs))
	for _, p := range a.IPs {
		ips = append(ips, p.String())
	}
	return netconf.Allocation{
		AttachmentKey: netconf.AttachmentKey(a.Key),
		IPs:           ips,
		Network:       a.Network,
		Netns:         a.Netns,
		PodNamespace:  a.PodNamespace,
		PodName:       a.PodName,
		PodUID:        a.PodUID,
		Created:       a.Created.UTC().Format(time.RFC3339),
	}
}
