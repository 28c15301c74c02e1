package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of every type in this package.
var GroupVersion = schema.GroupVersion{Group: "wirelace.io", Version: "v1alpha1"}

// Resources, for dynamic clients and informers.
var (
	MeshNodeResource   = GroupVersion.WithResource("meshnodes")
	IPClaimResource    = GroupVersion.WithResource("ipclaims")
	RouteGrantResource = GroupVersion.WithResource("routegrants")
)

// AddToScheme registers the types of this package with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &MeshNode{}, &MeshNodeList{}, &IPClaim{}, &IPClaimList{}, &RouteGrant{}, &RouteGrantList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
