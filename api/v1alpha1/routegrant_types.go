package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RouteGrantSpec names a node and the prefixes it may advertise.
type RouteGrantSpec struct {
	// NodeName is the node allowed to advertise CIDRs.
	// +kubebuilder:validation:MinLength=1
	NodeName string `json:"nodeName"`
	// CIDRs are the prefixes the node may advertise (its MeshNode's
	// advertisedCIDRs), or any part of them. A default route is never
	// granted.
	// +kubebuilder:validation:MinItems=1
	CIDRs []string `json:"cidrs"`
}

// RouteGrant is an operator's permission for one node to act as a gateway:
// to advertise prefixes beyond its own pods to the mesh (a site's LAN, the
// API server's network on EKS Hybrid Nodes). A node writes its own
// MeshNode, so what it advertises there is only a claim; peers route it
// only inside a RouteGrant naming that node, which nodes can read but not
// write.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.nodeName`
// +kubebuilder:printcolumn:name="CIDRs",type=string,JSONPath=`.spec.cidrs`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RouteGrant struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec RouteGrantSpec `json:"spec"`
}

// RouteGrantList is a list of RouteGrants.
//
// +kubebuilder:object:root=true
type RouteGrantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RouteGrant `json:"items"`
}
