package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// FieldManager is the name wirelaced applies its objects under.
const FieldManager = "wirelaced"

// PublishMeshNode makes the node's MeshNode carry spec, owned by its Node,
// with one server-side apply: created if missing, changed if different, in
// one request and without reading it first. The daemon owns every field it
// applies (Force): the MeshNode says what this node is, and only this node
// may say it (the admission policy). Callers compare with their informer
// cache first, so a quiet cluster causes no writes at all.
func PublishMeshNode(ctx context.Context, c Clients, node *corev1.Node, spec v1alpha1.MeshNodeSpec) error {
	u, err := toUnstructured(&v1alpha1.MeshNode{
		ObjectMeta: metav1.ObjectMeta{
			Name:            node.Name,
			OwnerReferences: []metav1.OwnerReference{nodeOwner(node)},
		},
		Spec: spec,
	}, "MeshNode")
	if err != nil {
		return err
	}
	// Fields the typed struct always carries but this node does not set.
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	if _, err := c.Dynamic.Resource(v1alpha1.MeshNodeResource).Apply(ctx, node.Name, u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply MeshNode %s (is the MeshNode CRD installed?): %w", node.Name, err)
	}
	return nil
}
