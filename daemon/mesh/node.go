package mesh

import (
	"fmt"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// Node is a mesh member as this node sees it: a MeshNode parsed into the
// types the data plane needs.
type Node struct {
	Name      string
	PublicKey wgtypes.Key
	// Endpoints are UDP candidates, in the order the node published them.
	Endpoints []netip.AddrPort
	// AllowedIPs are everything routed to this node: its mesh IPs as host
	// prefixes, its pod CIDRs and any advertised CIDRs.
	AllowedIPs []netip.Prefix
}

// FromMeshNode parses a MeshNode. An error means the object cannot be used
// at all; the caller skips that peer and says why.
func FromMeshNode(mn *v1alpha1.MeshNode) (Node, error) {
	n := Node{Name: mn.Name}
	k, err := wgtypes.ParseKey(mn.Spec.PublicKey)
	if err != nil {
		return n, fmt.Errorf("meshnode %s: public key: %w", mn.Name, err)
	}
	n.PublicKey = k
	for _, ep := range mn.Spec.Endpoints {
		ap, err := netip.ParseAddrPort(ep.Address)
		if err != nil {
			return n, fmt.Errorf("meshnode %s: endpoint %q: %w", mn.Name, ep.Address, err)
		}
		n.Endpoints = append(n.Endpoints, ap)
	}
	if len(mn.Spec.MeshIPs) == 0 {
		return n, fmt.Errorf("meshnode %s: no mesh IPs", mn.Name)
	}
	for _, s := range mn.Spec.MeshIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return n, fmt.Errorf("meshnode %s: mesh IP %q: %w", mn.Name, s, err)
		}
		n.AllowedIPs = append(n.AllowedIPs, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, list := range [][]string{mn.Spec.PodCIDRs, mn.Spec.AdvertisedCIDRs} {
		for _, s := range list {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return n, fmt.Errorf("meshnode %s: CIDR %q: %w", mn.Name, s, err)
			}
			n.AllowedIPs = append(n.AllowedIPs, p.Masked())
		}
	}
	return n, nil
}
