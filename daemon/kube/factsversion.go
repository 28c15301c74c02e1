package kube

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// FactsVersion identifies one state of what the cluster says about a node
// (its Node, IPClaims, RouteGrants, CiliumNode, Pods' addresses): it
// changes whenever an informer event may have changed any of them, so a
// reader may reuse what it derived from them while it stays the same.
type FactsVersion struct{ all, node uint64 }

// factsVersions counts the events behind FactsVersion. An event whose node
// cannot be told (an object that did not decode) bumps all, which changes
// every node's version.
type factsVersions struct {
	mu     sync.Mutex
	all    uint64
	byNode map[string]uint64
}

func (v *factsVersions) get(node string) FactsVersion {
	v.mu.Lock()
	defer v.mu.Unlock()
	return FactsVersion{all: v.all, node: v.byNode[node]}
}

// bump records an event about nodes; "" stands for a node that could not
// be told.
func (v *factsVersions) bump(nodes ...string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.byNode == nil {
		v.byNode = map[string]uint64{}
	}
	for _, n := range nodes {
		if n == "" {
			v.all++
			continue
		}
		v.byNode[n]++
	}
}

// FactsVersion returns the current version of node's facts. Read it
// before the facts: informers update their store before they deliver the
// event that bumps the version, so facts read after it are at least as
// new as it says, never older.
func (w *Watcher) FactsVersion(node string) FactsVersion { return w.facts.get(node) }

// factsNode says which node an informer object's event is about, "" when
// it cannot tell.
func factsNode(obj any) string {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	switch o := obj.(type) {
	case *corev1.Node:
		return o.Name
	case *v1alpha1.IPClaim:
		return o.Spec.NodeName
	case *v1alpha1.RouteGrant:
		return o.Spec.NodeName
	case *unstructured.Unstructured: // a CiliumNode, named after its node
		return o.GetName()
	}
	return ""
}
