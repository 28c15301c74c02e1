package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EndpointKind says where an endpoint candidate came from, which decides how
// much a peer may trust it to be reachable from elsewhere.
// +kubebuilder:validation:Enum=host;stun;configured
type EndpointKind string

const (
	// EndpointHost is an address of one of the node's own interfaces.
	EndpointHost EndpointKind = "host"
	// EndpointSTUN is the node's address as a STUN server saw it (server-reflexive).
	EndpointSTUN EndpointKind = "stun"
	// EndpointConfigured is set by the operator, e.g. a port-forward on a site router.
	EndpointConfigured EndpointKind = "configured"
)

// NATType is a node's NAT behaviour as its STUN classification found it;
// the value of MeshNode spec.natType.
type NATType string

// The NAT types.
const (
	// NATOpen: the node's address as seen from outside is its own (no NAT).
	NATOpen NATType = "open"
	// NATCone: endpoint-independent mapping and filtering.
	NATCone NATType = "cone"
	// NATConeRestricted: endpoint-independent mapping, address-dependent
	// filtering.
	NATConeRestricted NATType = "cone-restricted"
	// NATConePortRestricted: endpoint-independent mapping,
	// address-and-port-dependent filtering (the typical home router, and
	// Linux masquerade).
	NATConePortRestricted NATType = "cone-port-restricted"
	// NATSymmetric: endpoint-dependent mapping (cloud NAT gateways).
	NATSymmetric NATType = "symmetric"
	// NATUDPBlocked: no STUN server answered at all.
	NATUDPBlocked NATType = "udp-blocked"
	// NATUnknown: some server answered but the behaviour could not be told.
	NATUnknown NATType = "unknown"
)

// Endpoint is one UDP address at which a node may be reachable.
type Endpoint struct {
	// Address is host:port, with IPv6 hosts in brackets.
	// +kubebuilder:validation:MinLength=1
	Address string       `json:"address"`
	Kind    EndpointKind `json:"kind"`
}

// MeshNodeSpec is what a node tells its peers about itself. Only the node
// itself writes it, and only when something changed.
type MeshNodeSpec struct {
	// PublicKey is the node's WireGuard public key (base64).
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$`
	PublicKey string `json:"publicKey"`
	// KeyPrefix is the first 8 characters of PublicKey, kept only so that
	// `kubectl get meshnodes` can show which key a node uses.
	KeyPrefix string `json:"keyPrefix,omitempty"`
	// ControlKey is the node's control public key (base64, NaCl box); it
	// authenticates path probes and relay sessions and is distinct from the
	// WireGuard key.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$`
	ControlKey string `json:"controlKey"`
	// Endpoints are the UDP addresses at which peers may reach this node,
	// best first.
	// +optional
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// NATType is the node's NAT behaviour as classified by STUN.
	// +optional
	NATType string `json:"natType,omitempty"`
	// MeshIPs are the node's own addresses on the mesh interface, one per
	// address family, each claimed through an IPClaim.
	// +kubebuilder:validation:MinItems=1
	MeshIPs []string `json:"meshIPs"`
	// PodCIDRs are the node's pod address blocks.
	// +optional
	PodCIDRs []string `json:"podCIDRs,omitempty"`
	// PodIPs are addresses of this node's pods outside PodCIDRs, in chained
	// mode (the primary CNI chose them), aggregated into prefixes. Peers
	// route them only where the cluster backs them: the node's
	// Node.spec.podCIDRs, its CiliumNode spec.ipam.podCIDRs, or Pods bound
	// to the node with those addresses.
	// +optional
	PodIPs []string `json:"podIPs,omitempty"`
	// AdvertisedCIDRs are extra prefixes reachable through this node.
	// +optional
	AdvertisedCIDRs []string `json:"advertisedCIDRs,omitempty"`
}

// PeerCounts counts a node's peers by the path it uses to reach them.
type PeerCounts struct {
	Total  int `json:"total"`
	Direct int `json:"direct"`
	Relay  int `json:"relay"`
}

// MeshNodeStatus is observed state, written by the node itself.
type MeshNodeStatus struct {
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// +optional
	Peers PeerCounts `json:"peers,omitempty"`
}

// MeshNode is one node's membership in the mesh. Its name is the node name
// and its owner is the Node, so it goes when the Node goes.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=mn
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mesh IP",type=string,JSONPath=`.spec.meshIPs[0]`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpoints[0].address`
// +kubebuilder:printcolumn:name="NAT",type=string,JSONPath=`.spec.natType`
// +kubebuilder:printcolumn:name="Key",type=string,JSONPath=`.spec.keyPrefix`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MeshNodeSpec   `json:"spec"`
	Status MeshNodeStatus `json:"status,omitempty"`
}

// MeshNodeList is a list of MeshNodes.
//
// +kubebuilder:object:root=true
type MeshNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshNode `json:"items"`
}
