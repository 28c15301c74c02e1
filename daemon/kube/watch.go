package kube

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// resyncPeriod re-delivers every cached object now and then, a safety net
// that costs no API requests (it replays the local cache).
const resyncPeriod = 10 * time.Minute

// Watcher keeps local caches of MeshNodes and Nodes through informers and
// calls a function whenever either changes. Readers get consistent snapshots
// from the caches; nothing polls the API.
type Watcher struct {
	meshNodes cache.SharedIndexInformer
	nodes     cache.SharedIndexInformer
	pods      cache.SharedIndexInformer
	dyn       dynamicinformer.DynamicSharedInformerFactory
	core      informers.SharedInformerFactory
	podsOnly  informers.SharedInformerFactory
}

// NewWatcher sets up the informers. meshChanged is called on every change of
// a MeshNode or Node, podsChanged on every change of a pod scheduled to
// nodeName (the only pods this node watches). Both are called from informer
// goroutines, so they must not block.
func NewWatcher(c Clients, nodeName string, meshChanged, podsChanged func()) (*Watcher, error) {
	w := &Watcher{
		dyn:  dynamicinformer.NewDynamicSharedInformerFactory(c.Dynamic, resyncPeriod),
		core: informers.NewSharedInformerFactory(c.Core, resyncPeriod),
		podsOnly: informers.NewSharedInformerFactoryWithOptions(c.Core, resyncPeriod,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
			})),
	}
	w.meshNodes = w.dyn.ForResource(v1alpha1.MeshNodeResource).Informer()
	w.nodes = w.core.Core().V1().Nodes().Informer()
	w.pods = w.podsOnly.Core().V1().Pods().Informer()
	for _, x := range []struct {
		inf cache.SharedIndexInformer
		f   func()
	}{{w.meshNodes, meshChanged}, {w.nodes, meshChanged}, {w.pods, podsChanged}} {
		f := x.f
		h := cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { f() },
			UpdateFunc: func(any, any) { f() },
			DeleteFunc: func(any) { f() },
		}
		if _, err := x.inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("add event handler: %w", err)
		}
	}
	return w, nil
}

// Start runs the informers until ctx ends and waits for their first full
// list, so the first reconcile sees the whole cluster rather than a part.
func (w *Watcher) Start(ctx context.Context, log *slog.Logger) error {
	w.dyn.Start(ctx.Done())
	w.core.Start(ctx.Done())
	w.podsOnly.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), w.meshNodes.HasSynced, w.nodes.HasSynced, w.pods.HasSynced) {
		return fmt.Errorf("informer caches did not sync: %w", ctx.Err())
	}
	log.Debug("informer caches synced")
	return nil
}

// Shutdown stops the informers' goroutines (after ctx is done).
func (w *Watcher) Shutdown() {
	w.dyn.Shutdown()
	w.core.Shutdown()
	w.podsOnly.Shutdown()
}

// Pods returns the cached pods scheduled to this node.
func (w *Watcher) Pods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, obj := range w.pods.GetStore().List() {
		if p, ok := obj.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}

// MeshNodes returns every cached MeshNode; objects that do not decode are
// returned as errors for the caller to report.
func (w *Watcher) MeshNodes() ([]*v1alpha1.MeshNode, []error) {
	var out []*v1alpha1.MeshNode
	var errs []error
	for _, obj := range w.meshNodes.GetStore().List() {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		mn, err := fromUnstructured[v1alpha1.MeshNode](u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, mn)
	}
	return out, errs
}

// MeshNode returns one cached MeshNode, or nil.
func (w *Watcher) MeshNode(name string) *v1alpha1.MeshNode {
	obj, ok, err := w.meshNodes.GetStore().GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	mn, err := fromUnstructured[v1alpha1.MeshNode](u)
	if err != nil {
		return nil
	}
	return mn
}

// NodeExists reports whether the Node object name is in the cache.
func (w *Watcher) NodeExists(name string) bool {
	_, ok, err := w.nodes.GetStore().GetByKey(name)
	return err == nil && ok
}

// Node returns the cached Node, or nil.
func (w *Watcher) Node(name string) *corev1.Node {
	obj, ok, err := w.nodes.GetStore().GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	n, _ := obj.(*corev1.Node)
	return n
}
