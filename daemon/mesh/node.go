package mesh

import (
	"fmt"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// Node is a mesh member as this node sees it: a MeshNode parsed into the
// types the data plane needs.
type Node struct {
	Name      string
	PublicKey wgtypes.Key
	// ControlKey authenticates the node's path probes.
	ControlKey wgtypes.Key
	// Endpoints are UDP candidates, in the order the node published them.
	Endpoints []netip.AddrPort
	// EndpointKinds are the kinds of Endpoints (host, stun, configured),
	// index for index.
	EndpointKinds []string
	// NATType is the node's published NAT type.
	NATType string
	// WireGuardEndpoint is what the device is configured with for this
	// peer; the caller sets it (wirelaced: the peer's virtual endpoint, the
	// Bind choosing the real path). Invalid means leave it alone.
	WireGuardEndpoint netip.AddrPort
	// AllowedIPs are what is routed to this node in the main table: its
	// mesh IPs as host prefixes, its pod CIDRs, any advertised CIDRs, and
	// (once verified by Desired) its chained pods' addresses.
	AllowedIPs []netip.Prefix
	// PodIPClaims are the node's chained pods' addresses outside its pod
	// CIDRs, as its MeshNode announces them: a claim until Desired checks
	// it against what the cluster says (Facts).
	PodIPClaims []netip.Prefix
	// NodeIPs are the node's own (InternalIP) addresses, routed through the
	// mesh in the node-IP table when node-IP routing is on; Desired fills
	// them in from Facts.
	NodeIPs []netip.Prefix
}

// WireGuardAllowedIPs is everything the device accepts from and sends to
// this peer.
func (n Node) WireGuardAllowedIPs() []netip.Prefix {
	return append(slices.Clip(n.AllowedIPs), n.NodeIPs...)
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
	if mn.Spec.ControlKey != "" {
		if n.ControlKey, err = wgtypes.ParseKey(mn.Spec.ControlKey); err != nil {
			return n, fmt.Errorf("meshnode %s: control key: %w", mn.Name, err)
		}
	}
	for _, ep := range mn.Spec.Endpoints {
		ap, err := netip.ParseAddrPort(ep.Address)
		if err != nil {
			return n, fmt.Errorf("meshnode %s: endpoint %q: %w", mn.Name, ep.Address, err)
		}
		n.Endpoints = append(n.Endpoints, ap)
		n.EndpointKinds = append(n.EndpointKinds, string(ep.Kind))
	}
	n.NATType = mn.Spec.NATType
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
	for _, s := range mn.Spec.PodIPs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return n, fmt.Errorf("meshnode %s: pod IPs %q: %w", mn.Name, s, err)
		}
		n.PodIPClaims = append(n.PodIPClaims, p.Masked())
	}
	return n, nil
}
