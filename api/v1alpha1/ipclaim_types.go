package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClaimPurpose says what a claimed prefix is used for.
// +kubebuilder:validation:Enum=MeshIP;PodCIDR
type ClaimPurpose string

const (
	// PurposeMeshIP is a node's own address on the mesh interface.
	PurposeMeshIP ClaimPurpose = "MeshIP"
	// PurposePodCIDR is a block of pod addresses handed to one node.
	PurposePodCIDR ClaimPurpose = "PodCIDR"
)

// IPClaimSpec names the prefix a claim holds and who holds it.
type IPClaimSpec struct {
	// NodeName is the node holding the claim.
	// +kubebuilder:validation:MinLength=1
	NodeName string `json:"nodeName"`
	// Prefix is the claimed address or block in CIDR notation.
	// +kubebuilder:validation:MinLength=1
	Prefix  string       `json:"prefix"`
	Purpose ClaimPurpose `json:"purpose"`
}

// IPClaim makes an address or block unique across the cluster: its name is
// derived from the prefix, and creating an object whose name exists fails,
// so two nodes can never hold the same prefix. Its owner is the Node, so a
// node that leaves frees its claims.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.nodeName`
// +kubebuilder:printcolumn:name="Prefix",type=string,JSONPath=`.spec.prefix`
// +kubebuilder:printcolumn:name="Purpose",type=string,JSONPath=`.spec.purpose`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPClaim struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec IPClaimSpec `json:"spec"`
}

// IPClaimList is a list of IPClaims.
//
// +kubebuilder:object:root=true
type IPClaimList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPClaim `json:"items"`
}
