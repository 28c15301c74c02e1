package kube

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// NodeLabel marks objects that belong to a node, for cheap listing by node.
const NodeLabel = "wirelace.io/node"

// Claim returns this node's prefix of length bits in pool (a single address
// for a mesh IP, a block for pod CIDRs), claiming a free one if the node
// holds none yet. A restarted node gets what it held before.
func Claim(ctx context.Context, c Clients, node *corev1.Node, pool netip.Prefix, bits int, purpose v1alpha1.ClaimPurpose, log *slog.Logger) (netip.Prefix, error) {
	held, err := heldClaims(ctx, c, node.Name, purpose)
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, p := range held {
		if pool.Contains(p.Addr()) && p.Bits() == bits {
			return p, nil
		}
	}
	for _, p := range Candidates(pool, bits, node.Name, maxClaimAttempts) {
		ok, err := claim(ctx, c, node, p, purpose)
		if err != nil {
			return netip.Prefix{}, err
		}
		if ok {
			log.Info("claimed prefix", "prefix", p, "purpose", purpose)
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /%d in %s after %d attempts: the pool is full, use a larger one", bits, pool, maxClaimAttempts)
}

// heldClaims lists the prefixes node already holds for purpose.
func heldClaims(ctx context.Context, c Clients, nodeName string, purpose v1alpha1.ClaimPurpose) ([]netip.Prefix, error) {
	list, err := c.Dynamic.Resource(v1alpha1.IPClaimResource).List(ctx, metav1.ListOptions{
		LabelSelector: NodeLabel + "=" + nodeName,
	})
	if err != nil {
		return nil, fmt.Errorf("list IP claims (is the IPClaim CRD installed?): %w", err)
	}
	var out []netip.Prefix
	for i := range list.Items {
		cl, err := fromUnstructured[v1alpha1.IPClaim](&list.Items[i])
		if err != nil {
			return nil, err
		}
		if cl.Spec.NodeName != nodeName || cl.Spec.Purpose != purpose {
			continue
		}
		if p, err := netip.ParsePrefix(cl.Spec.Prefix); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// claim tries to create the IPClaim for p. It reports true if node now holds
// p (created now, or earlier by this same node) and false if another node
// holds it.
func claim(ctx context.Context, c Clients, node *corev1.Node, p netip.Prefix, purpose v1alpha1.ClaimPurpose) (bool, error) {
	name := ClaimName(p)
	obj := &v1alpha1.IPClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Labels:          map[string]string{NodeLabel: node.Name},
			OwnerReferences: []metav1.OwnerReference{nodeOwner(node)},
		},
		Spec: v1alpha1.IPClaimSpec{NodeName: node.Name, Prefix: p.String(), Purpose: purpose},
	}
	u, err := toUnstructured(obj, "IPClaim")
	if err != nil {
		return false, err
	}
	_, err = c.Dynamic.Resource(v1alpha1.IPClaimResource).Create(ctx, u, metav1.CreateOptions{})
	if err == nil {
		return true, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return false, fmt.Errorf("claim %s: %w", p, err)
	}
	existing, err := c.Dynamic.Resource(v1alpha1.IPClaimResource).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil // released in between; the next candidate will do
		}
		return false, fmt.Errorf("read claim %s: %w", name, err)
	}
	cl, err := fromUnstructured[v1alpha1.IPClaim](existing)
	if err != nil {
		return false, err
	}
	return cl.Spec.NodeName == node.Name, nil
}

// nodeOwner makes node the owner of an object, so the garbage collector
// removes the object when the Node is deleted.
func nodeOwner(node *corev1.Node) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: "v1",
		Kind:       "Node",
		Name:       node.Name,
		UID:        node.UID,
	}
}
