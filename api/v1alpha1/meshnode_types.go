package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/api/vocab"
)

// EndpointKind says where an endpoint candidate came from (see
// vocab.EndpointKind). An alias: controller-gen takes a type's markers from
// where it is defined, so the enum is on the field that uses it.
type EndpointKind = vocab.EndpointKind

// The published endpoint kinds, under the names this API has always used.
const (
	EndpointHost       = vocab.EndpointHost
	EndpointSTUN       = vocab.EndpointSTUN
	EndpointConfigured = vocab.EndpointConfigured
)

// NATType is a node's NAT behaviour as its STUN classification found it
// (see vocab.NATType); the value of MeshNode spec.natType. An alias, like
// EndpointKind, with the enum on the field.
type NATType = vocab.NATType

// The NAT types (see vocab for what each means).
const (
	NATOpen               = vocab.NATOpen
	NATCone               = vocab.NATCone
	NATConeRestricted     = vocab.NATConeRestricted
	NATConePortRestricted = vocab.NATConePortRestricted
	NATSymmetric          = vocab.NATSymmetric
	NATUDPBlocked         = vocab.NATUDPBlocked
	NATUnknown            = vocab.NATUnknown
)

// Endpoint is one UDP address at which a node may be reachable.
type Endpoint struct {
	// Address is host:port, with IPv6 hosts in brackets.
	// +kubebuilder:validation:MinLength=1
	Address string `json:"address"`
	// Kind says where the address came from: host (an address of one of
	// the node's interfaces), stun (the node's address as a STUN server saw
	// it) or configured (set by the operator, e.g. a port-forward).
	// +kubebuilder:validation:Enum=host;stun;configured
	Kind EndpointKind `json:"kind"`
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
	// NATType is the node's NAT behaviour as classified by STUN; absent
	// until the node has classified it.
	// +kubebuilder:validation:Enum=open;cone;cone-restricted;cone-port-restricted;symmetric;udp-blocked;unknown
	// +optional
	NATType NATType `json:"natType,omitempty"`
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

// MeshNode is one node's membership in the mesh. Its name is the node name
// and its owner is the Node, so it goes when the Node goes.
//
// It has no status. What a node observes (each peer's path, its readiness)
// changes with every path switch and matters on that node: writing it here
// would turn every failover into API writes watched by every node. It is in
// `wirelacectl status`, the daemon's metrics and its Lease instead.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=mn
// +kubebuilder:printcolumn:name="Mesh IP",type=string,JSONPath=`.spec.meshIPs[0]`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpoints[0].address`
// +kubebuilder:printcolumn:name="NAT",type=string,JSONPath=`.spec.natType`
// +kubebuilder:printcolumn:name="Key",type=string,JSONPath=`.spec.keyPrefix`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec MeshNodeSpec `json:"spec"`
}

// MeshNodeList is a list of MeshNodes.
//
// +kubebuilder:object:root=true
type MeshNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshNode `json:"items"`
}
