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
	// What the node's MeshNode claims (FromMeshNode). A MeshNode is written
	// by the node it describes, so none of this is routed until Desired
	// has checked it against what the cluster says (Facts).
	MeshIPClaims     []netip.Addr
	PodCIDRClaims    []netip.Prefix
	PodIPClaims      []netip.Prefix // chained pods' addresses outside its pod CIDRs
	AdvertisedClaims []netip.Prefix // extra prefixes it would route (a gateway)

	// AllowedIPs are what Desired accepted of the claims: routed to this
	// node in the main table and accepted from it by WireGuard.
	AllowedIPs []netip.Prefix
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
		n.MeshIPClaims = append(n.MeshIPClaims, a.Unmap())
	}
	for _, f := range []struct {
		field string
		in    []string
		out   *[]netip.Prefix
	}{
		{"pod CIDR", mn.Spec.PodCIDRs, &n.PodCIDRClaims},
		{"pod IPs", mn.Spec.PodIPs, &n.PodIPClaims},
		{"advertised CIDR", mn.Spec.AdvertisedCIDRs, &n.AdvertisedClaims},
	} {
		for _, s := range f.in {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return n, fmt.Errorf("meshnode %s: %s %q: %w", mn.Name, f.field, s, err)
			}
			*f.out = append(*f.out, p.Masked())
		}
	}
	return n, nil
}
