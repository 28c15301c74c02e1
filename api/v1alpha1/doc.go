// Package v1alpha1 holds the wirelace.io/v1alpha1 API: the MeshNode each node
// publishes about itself and the IPClaim objects that make address
// allocation unique by construction.
//
// +kubebuilder:object:generate=true
// +groupName=wirelace.io
package v1alpha1
