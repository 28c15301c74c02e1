package mesh

import (
	"fmt"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/vocab"
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
	EndpointKinds []vocab.EndpointKind
	// NATType is the node's published NAT type.
	NATType vocab.NATType
	// What the node's MeshNode claims (ParseClaim). A MeshNode is written
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

// Claim is what a node's MeshNode says, as the node wrote it: strings not
// yet parsed, claims not yet checked. The API side (daemon/kube) copies it
// out of the object, so that this package needs no Kubernetes types.
type Claim struct {
	Name       string
	PublicKey  string
	ControlKey string
	Endpoints  []ClaimedEndpoint
	NATType    vocab.NATType
	MeshIPs    []string
	PodCIDRs   []string
	PodIPs     []string
	// AdvertisedCIDRs are extra prefixes the node would route (a gateway).
	AdvertisedCIDRs []string
}

// ClaimedEndpoint is one published endpoint candidate.
type ClaimedEndpoint struct {
	Address string
	Kind    vocab.EndpointKind
}

// ParseClaim parses a MeshNode's claim. An error means the object cannot be
// used at all; the caller skips that peer and says why.
func ParseClaim(c Claim) (Node, error) {
	n := Node{Name: c.Name}
	k, err := wgtypes.ParseKey(c.PublicKey)
	if err != nil {
		return n, fmt.Errorf("meshnode %s: public key: %w", c.Name, err)
	}
	n.PublicKey = k
	if c.ControlKey != "" {
		if n.ControlKey, err = wgtypes.ParseKey(c.ControlKey); err != nil {
			return n, fmt.Errorf("meshnode %s: control key: %w", c.Name, err)
		}
	}
	for _, ep := range c.Endpoints {
		ap, err := netip.ParseAddrPort(ep.Address)
		if err != nil {
			return n, fmt.Errorf("meshnode %s: endpoint %q: %w", c.Name, ep.Address, err)
		}
		n.Endpoints = append(n.Endpoints, ap)
		n.EndpointKinds = append(n.EndpointKinds, ep.Kind)
	}
	n.NATType = c.NATType
	if len(c.MeshIPs) == 0 {
		return n, fmt.Errorf("meshnode %s: no mesh IPs", c.Name)
	}
	for _, s := range c.MeshIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return n, fmt.Errorf("meshnode %s: mesh IP %q: %w", c.Name, s, err)
		}
		n.MeshIPClaims = append(n.MeshIPClaims, a.Unmap())
	}
	for _, f := range []struct {
		field string
		in    []string
		out   *[]netip.Prefix
	}{
		{"pod CIDR", c.PodCIDRs, &n.PodCIDRClaims},
		{"pod IPs", c.PodIPs, &n.PodIPClaims},
		{"advertised CIDR", c.AdvertisedCIDRs, &n.AdvertisedClaims},
	} {
		for _, s := range f.in {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return n, fmt.Errorf("meshnode %s: %s %q: %w", c.Name, f.field, s, err)
			}
			*f.out = append(*f.out, p.Masked())
		}
	}
	return n, nil
}
