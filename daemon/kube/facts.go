package kube

import (
	"net/netip"

	"k8s.io/client-go/tools/cache"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// What the cluster says about a node, as opposed to what the node's own
// MeshNode claims: IPClaims (unique by name, created only for the
// claimant's own node under the admission policy) and RouteGrants (written
// by operators only). Both are indexed by the node they name.

// byNodeName indexes IPClaims and RouteGrants by spec.nodeName.
const byNodeName = "spec.nodeName"

func indexSpecNodeName(obj any) ([]string, error) {
	var name string
	switch o := obj.(type) {
	case *v1alpha1.IPClaim:
		name = o.Spec.NodeName
	case *v1alpha1.RouteGrant:
		name = o.Spec.NodeName
	}
	if name == "" {
		return nil, nil
	}
	return []string{name}, nil
}

// byNode returns the cache's own objects naming node: callers must not
// change them.
func byNode[T any](inf cache.SharedIndexInformer, node string) []*T {
	objs, err := inf.GetIndexer().ByIndex(byNodeName, node)
	if err != nil {
		return nil
	}
	var out []*T
	for _, obj := range objs {
		if t, ok := obj.(*T); ok {
			out = append(out, t)
		}
	}
	return out
}

// Claims returns the mesh IPs and pod CIDR blocks node holds IPClaims for.
// A claim counts only under its canonical name (ClaimName of its prefix):
// the name is what makes a prefix unique, so a claim under any other name
// proves nothing.
func (w *Watcher) Claims(node string) (meshIPs []netip.Addr, podCIDRs []netip.Prefix) {
	for _, c := range byNode[v1alpha1.IPClaim](w.ipClaims, node) {
		p, err := netip.ParsePrefix(c.Spec.Prefix)
		if err != nil || c.Name != ClaimName(p) {
			continue
		}
		switch c.Spec.Purpose {
		case v1alpha1.PurposeMeshIP:
			if p.IsSingleIP() {
				meshIPs = append(meshIPs, p.Addr().Unmap())
			}
		case v1alpha1.PurposePodCIDR:
			podCIDRs = append(podCIDRs, p.Masked())
		}
	}
	return meshIPs, podCIDRs
}

// Grants returns the prefixes RouteGrants allow node to advertise.
func (w *Watcher) Grants(node string) []netip.Prefix {
	var out []netip.Prefix
	for _, g := range byNode[v1alpha1.RouteGrant](w.routeGrants, node) {
		for _, p := range parsePrefixes(g.Spec.CIDRs) {
			if p.Bits() > 0 {
				out = append(out, p)
			}
		}
	}
	return out
}
