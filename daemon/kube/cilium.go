package kube

import (
	"context"
	"fmt"
	"net/netip"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Chained after Cilium, the pod CIDRs of a node are Cilium's: its operator
// writes them to the node's CiliumNode (spec.ipam.podCIDRs) in
// cluster-pool IPAM mode, which is what EKS Hybrid Nodes use. Wirelace
// reads them to route (and verify) what Cilium allocated; it never writes
// CiliumNodes.

// CiliumNodeResource is Cilium's per-node resource.
var CiliumNodeResource = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnodes"}

// CiliumNodesServed reports whether the API serves CiliumNodes (Cilium is
// installed). An API error other than "not found" is returned.
func CiliumNodesServed(c Clients) (bool, error) {
	list, err := c.Core.Discovery().ServerResourcesForGroupVersion(CiliumNodeResource.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discover %s: %w", CiliumNodeResource.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == CiliumNodeResource.Resource {
			return true, nil
		}
	}
	return false, nil
}

// CiliumPodCIDRs returns spec.ipam.podCIDRs of a CiliumNode.
func CiliumPodCIDRs(u *unstructured.Unstructured) []string {
	cidrs, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "ipam", "podCIDRs")
	return cidrs
}

// CiliumNodePodCIDRs reads the named CiliumNode's pod CIDRs; none (and no
// error) if it does not exist.
func CiliumNodePodCIDRs(ctx context.Context, c Clients, name string) ([]netip.Prefix, error) {
	u, err := c.Dynamic.Resource(CiliumNodeResource).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read CiliumNode %s: %w", name, err)
	}
	return parsePrefixes(CiliumPodCIDRs(u)), nil
}
