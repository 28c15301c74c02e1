package kube

import (
	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/mesh"
)

// MeshNodeClaim copies what a MeshNode says into the mesh package's terms, unparsed:
// mesh parses and checks it (ParseClaim, Desired) without knowing the API
// types.
func MeshNodeClaim(mn *v1alpha1.MeshNode) mesh.Claim {
	c := mesh.Claim{
		Name:            mn.Name,
		PublicKey:       mn.Spec.PublicKey,
		ControlKey:      mn.Spec.ControlKey,
		NATType:         mn.Spec.NATType,
		MeshIPs:         mn.Spec.MeshIPs,
		PodCIDRs:        mn.Spec.PodCIDRs,
		PodIPs:          mn.Spec.PodIPs,
		AdvertisedCIDRs: mn.Spec.AdvertisedCIDRs,
	}
	for _, ep := range mn.Spec.Endpoints {
		c.Endpoints = append(c.Endpoints, mesh.ClaimedEndpoint{Address: ep.Address, Kind: ep.Kind})
	}
	return c
}
