package node

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/kube"
)

// findPodCIDRs returns the node's pod CIDRs: Node.spec.podCIDRs when the cluster
// allocates them (kube-controller-manager --allocate-node-cidrs, EKS, kind),
// else Cilium's (its CiliumNode's spec.ipam.podCIDRs, when Wirelace is
// chained after Cilium in cluster-pool IPAM mode), else one block per
// family claimed from the configured cluster CIDRs.
func (d *Daemon) findPodCIDRs(ctx context.Context, node *corev1.Node) ([]netip.Prefix, error) {
	if len(node.Spec.PodCIDRs) > 0 {
		var out []netip.Prefix
		for _, s := range node.Spec.PodCIDRs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("Node %s has an invalid spec.podCIDRs entry %q: %w", node.Name, s, err)
			}
			out = append(out, p.Masked())
		}
		return out, nil
	}
	if d.ciliumNodes {
		cidrs, err := kube.CiliumNodePodCIDRs(ctx, d.clients, node.Name)
		if err != nil {
			return nil, err
		}
		if len(cidrs) > 0 {
			return cidrs, nil
		}
	}
	pools, err := d.cfg.ClusterPools()
	if err != nil {
		return nil, err
	}
	if len(pools) == 0 {
		return nil, fmt.Errorf("Node %s has no spec.podCIDRs and no --cluster-cidrs are configured to claim one from", node.Name)
	}
	var out []netip.Prefix
	for _, pool := range pools {
		p, err := kube.Claim(ctx, d.clients, node, pool, d.cfg.BlockSize(pool), v1alpha1.PurposePodCIDR, d.log)
		if err != nil {
			return nil, fmt.Errorf("claim pod CIDR in %s: %w", pool, err)
		}
		out = append(out, p)
	}
	return out, nil
}
