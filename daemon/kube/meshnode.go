package kube

import (
	"context"
	"fmt"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// PublishMeshNode makes the node's MeshNode carry spec. It writes only when
// the stored spec differs, so a restart or a periodic call causes no churn
// for the watchers on every other node. It reports whether it wrote.
func PublishMeshNode(ctx context.Context, c Clients, node *corev1.Node, spec v1alpha1.MeshNodeSpec) (bool, error) {
	res := c.Dynamic.Resource(v1alpha1.MeshNodeResource)
	cur, err := res.Get(ctx, node.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		mn := &v1alpha1.MeshNode{
			ObjectMeta: metav1.ObjectMeta{
				Name:            node.Name,
				OwnerReferences: []metav1.OwnerReference{nodeOwner(node)},
			},
			Spec: spec,
		}
		u, err := toUnstructured(mn, "MeshNode")
		if err != nil {
			return false, err
		}
		if _, err := res.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return false, fmt.Errorf("create MeshNode %s: %w", node.Name, err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read MeshNode %s (is the MeshNode CRD installed?): %w", node.Name, err)
	}
	mn, err := fromUnstructured[v1alpha1.MeshNode](cur)
	if err != nil {
		return false, err
	}
	owners := []metav1.OwnerReference{nodeOwner(node)}
	if reflect.DeepEqual(mn.Spec, spec) && reflect.DeepEqual(mn.OwnerReferences, owners) {
		return false, nil
	}
	mn.Spec = spec
	mn.OwnerReferences = owners
	u, err := toUnstructured(mn, "MeshNode")
	if err != nil {
		return false, err
	}
	// Update carries the resourceVersion we read, so a concurrent writer
	// makes this fail with a conflict instead of being overwritten.
	if _, err := res.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		return false, fmt.Errorf("update MeshNode %s: %w", node.Name, err)
	}
	return true, nil
}
