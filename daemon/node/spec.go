package node

import (
	"errors"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/api/vocab"
	"github.com/wirelace/wirelace/daemon/mesh"
	"github.com/wirelace/wirelace/daemon/nat"
)

// selfState is everything this node's MeshNode says, gathered by the
// reconcile loop and passed by value, so that what the node claims is a
// pure function of it (nodeSpec).
type selfState struct {
	WireGuardKey, ControlKey wgtypes.Key
	MeshIPs                  []netip.Addr
	PodCIDRs                 []netip.Prefix
	// Chained are the addresses chained pods registered (the primary CNI's).
	Chained []netip.Addr
	// Advertised are the configured gateway prefixes, Granted those the
	// RouteGrants naming this node give it (with advertiseGrantedCIDRs).
	Advertised, Granted []netip.Prefix
	// Configured are operator-given endpoints (a port-forward, say).
	Configured []netip.AddrPort
	// NAT is what STUN found.
	NAT nat.Result
	// Host are the host's addresses (lace0's excluded), Port the WireGuard
	// port.
	Host []netip.Addr
	Port uint16
	// MeshPools are the mesh IP pools: addresses inside them are reachable
	// only through the mesh.
	MeshPools []netip.Prefix
}

// nodeSpec is what this node's MeshNode should say, and the endpoints in
// it in order (what the path machines offer peers in CallMeMaybe).
//
// Endpoints come configured first, then what STUN saw (reachable from
// elsewhere), then the host's own addresses (reachable on the same
// network): peers probe them all, and the first is the best guess. An
// address this node routes into pods or the mesh (a pod gateway on a CNI
// bridge, say) is never published: peers could reach it only through the
// tunnel itself.
func nodeSpec(s selfState) (v1alpha1.MeshNodeSpec, []netip.AddrPort, error) {
	pub := s.WireGuardKey.String()
	spec := v1alpha1.MeshNodeSpec{
		PublicKey:  pub,
		KeyPrefix:  pub[:8],
		ControlKey: s.ControlKey.String(),
		NATType:    s.NAT.Type,
	}
	for _, a := range s.MeshIPs {
		spec.MeshIPs = append(spec.MeshIPs, a.String())
	}
	spec.PodCIDRs = prefixStrings(s.PodCIDRs)
	advertised := slices.Clone(s.Advertised)
	for _, g := range s.Granted {
		if !slices.Contains(advertised, g) {
			advertised = append(advertised, g)
		}
	}
	spec.AdvertisedCIDRs = prefixStrings(advertised)
	chained := mesh.Aggregate(s.Chained)
	spec.PodIPs = prefixStrings(chained)

	var own []netip.AddrPort
	add := func(ap netip.AddrPort, kind v1alpha1.EndpointKind) {
		if !slices.Contains(own, ap) {
			own = append(own, ap)
			spec.Endpoints = append(spec.Endpoints, v1alpha1.Endpoint{Address: ap.String(), Kind: kind})
		}
	}
	for _, ap := range s.Configured {
		add(ap, v1alpha1.EndpointConfigured)
	}
	for _, ap := range s.NAT.Mapped {
		if slices.Contains(s.Host, ap.Addr()) {
			continue // an open node's mapped address is a host one
		}
		if s.NAT.Type == vocab.NATSymmetric {
			// A symmetric NAT maps each destination anew: the port STUN
			// saw is one no peer can reach, and a new one at every check,
			// which would rewrite the MeshNode every natRefresh. The
			// node's own port is what a port-preserving NAT keeps, and
			// it does not change.
			ap = netip.AddrPortFrom(ap.Addr(), s.Port)
		}
		add(ap, v1alpha1.EndpointSTUN)
	}
	inner := slices.Concat(s.PodCIDRs, chained, s.MeshPools)
	for _, a := range s.Host {
		if !containsAddr(inner, a) {
			add(netip.AddrPortFrom(a, s.Port), v1alpha1.EndpointHost)
		}
	}
	if len(own) == 0 {
		return spec, nil, errors.New("this node has no usable address to publish as an endpoint (no global unicast address on any up interface)")
	}
	return spec, own, nil
}

// prefixStrings formats ps, nil when empty: the spec is compared with the
// one the API returns, where an empty list is absent.
func prefixStrings(ps []netip.Prefix) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func endpointStrings(eps []netip.AddrPort) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.String()
	}
	return out
}
