package kube

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
	nodeName  string
	meshNodes cache.SharedIndexInformer
	nodes     cache.SharedIndexInformer
	// pods holds every Pod in the cluster, stripped to what routing needs
	// (see slimPod): this node's pods for IPAM reconciliation, every
	// node's pod IPs to verify what peers announce in chained mode.
	pods cache.SharedIndexInformer
	// ipClaims and routeGrants back (or not) what MeshNodes claim.
	ipClaims    cache.SharedIndexInformer
	routeGrants cache.SharedIndexInformer
	// ciliumNodes is nil unless the CiliumNode CRD is served.
	ciliumNodes cache.SharedIndexInformer
	dyn         dynamicinformer.DynamicSharedInformerFactory
	core        informers.SharedInformerFactory
	// facts versions what the informers other than MeshNodes' say about
	// each node (FactsVersion).
	facts factsVersions
}

// podsByNode indexes pods by spec.nodeName.
const podsByNode = "nodeName"

// NewWatcher sets up the informers. meshChanged is called on every change of
// a MeshNode, Node, IPClaim, RouteGrant or CiliumNode (when ciliumNodes is
// set) and whenever a
// pod's addresses change, podsChanged on every change of a pod scheduled to
// nodeName. Both are called from informer goroutines, so they must not
// block.
func NewWatcher(c Clients, nodeName string, ciliumNodes bool, meshChanged, podsChanged func()) (*Watcher, error) {
	w := &Watcher{
		nodeName: nodeName,
		dyn:      dynamicinformer.NewDynamicSharedInformerFactory(c.Dynamic, resyncPeriod),
		core:     informers.NewSharedInformerFactory(c.Core, resyncPeriod),
	}
	w.meshNodes = w.dyn.ForResource(v1alpha1.MeshNodeResource).Informer()
	w.ipClaims = w.dyn.ForResource(v1alpha1.IPClaimResource).Informer()
	w.routeGrants = w.dyn.ForResource(v1alpha1.RouteGrantResource).Informer()
	for _, t := range []struct {
		inf       cache.SharedIndexInformer
		transform cache.TransformFunc
	}{
		{w.meshNodes, decodeOnce[v1alpha1.MeshNode]},
		{w.ipClaims, decodeOnce[v1alpha1.IPClaim]},
		{w.routeGrants, decodeOnce[v1alpha1.RouteGrant]},
	} {
		if err := t.inf.SetTransform(t.transform); err != nil {
			return nil, fmt.Errorf("informer: %w", err)
		}
	}
	for _, inf := range []cache.SharedIndexInformer{w.ipClaims, w.routeGrants} {
		if err := inf.AddIndexers(cache.Indexers{byNodeName: indexSpecNodeName}); err != nil {
			return nil, fmt.Errorf("informer: %w", err)
		}
	}
	w.nodes = w.core.Core().V1().Nodes().Informer()
	w.pods = w.core.Core().V1().Pods().Informer()
	if err := w.pods.SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if err := w.pods.AddIndexers(cache.Indexers{podsByNode: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if _, err := w.meshNodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { meshChanged() },
		UpdateFunc: func(any, any) { meshChanged() },
		DeleteFunc: func(any) { meshChanged() },
	}); err != nil {
		return nil, fmt.Errorf("add event handler: %w", err)
	}
	// The others are facts about nodes: their versions move first.
	factsInformers := []cache.SharedIndexInformer{w.nodes, w.ipClaims, w.routeGrants}
	if ciliumNodes {
		w.ciliumNodes = w.dyn.ForResource(CiliumNodeResource).Informer()
		factsInformers = append(factsInformers, w.ciliumNodes)
	}
	for _, inf := range factsInformers {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.facts.bump(factsNode(obj)); meshChanged() },
			UpdateFunc: func(old, cur any) { w.facts.bump(factsNode(old), factsNode(cur)); meshChanged() },
			DeleteFunc: func(obj any) { w.facts.bump(factsNode(obj)); meshChanged() },
		}); err != nil {
			return nil, fmt.Errorf("add event handler: %w", err)
		}
	}
	onPod := func(old, cur *corev1.Pod) {
		if cur != nil && cur.Spec.NodeName == nodeName || old != nil && old.Spec.NodeName == nodeName {
			podsChanged()
		}
		if old == nil || cur == nil || !slices.Equal(old.Status.PodIPs, cur.Status.PodIPs) || old.Spec.NodeName != cur.Spec.NodeName {
			if old == nil && cur == nil {
				w.facts.bump("") // not a Pod: whose, unknown
			}
			for _, p := range []*corev1.Pod{old, cur} {
				if p != nil && p.Spec.NodeName != "" {
					w.facts.bump(p.Spec.NodeName)
				}
			}
			meshChanged()
		}
	}
	if _, err := w.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { onPod(nil, asPod(obj)) },
		UpdateFunc: func(old, cur any) { onPod(asPod(old), asPod(cur)) },
		DeleteFunc: func(obj any) { onPod(asPod(obj), nil) },
	}); err != nil {
		return nil, fmt.Errorf("add event handler: %w", err)
	}
	return w, nil
}

// slimPod keeps of a Pod only what the daemon reads, so that caching every
// Pod of a large cluster costs little memory.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a deletion tombstone: its object was slimmed when cached
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
		},
		Spec:   corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}, nil
}

// decodeOnce decodes one of the CRDs' objects once, as it enters the
// cache, rather than at every reconcile: with a thousand nodes every
// reconcile would otherwise convert thousands of maps (MeshNodes,
// IPClaims), and the typed objects are also smaller to keep. An object
// that does not decode is cached as its error, for the reader to report.
func decodeOnce[T any](obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil // a deletion tombstone: its object was decoded when cached
	}
	t, err := fromUnstructured[T](u)
	if err != nil {
		return &undecodable{ObjectMeta: metav1.ObjectMeta{Name: u.GetName(), ResourceVersion: u.GetResourceVersion()}, err: err}, nil
	}
	return t, nil
}

// undecodable stands in the cache for an object that did not decode.
type undecodable struct {
	metav1.ObjectMeta
	err error
}

func asPod(obj any) *corev1.Pod {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, _ := obj.(*corev1.Pod)
	return p
}

// Start runs the informers until ctx ends and waits for their first full
// list, so the first reconcile sees the whole cluster rather than a part.
func (w *Watcher) Start(ctx context.Context, log *slog.Logger) error {
	w.dyn.Start(ctx.Done())
	w.core.Start(ctx.Done())
	synced := []cache.InformerSynced{w.meshNodes.HasSynced, w.nodes.HasSynced, w.pods.HasSynced, w.ipClaims.HasSynced, w.routeGrants.HasSynced}
	if w.ciliumNodes != nil {
		synced = append(synced, w.ciliumNodes.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("informer caches did not sync: %w", ctx.Err())
	}
	log.Debug("informer caches synced")
	return nil
}

// Shutdown stops the informers' goroutines (after ctx is done).
func (w *Watcher) Shutdown() {
	w.dyn.Shutdown()
	w.core.Shutdown()
}

// Pods returns the cached pods scheduled to this node.
func (w *Watcher) Pods() []*corev1.Pod { return w.podsOf(w.nodeName) }

func (w *Watcher) podsOf(node string) []*corev1.Pod {
	objs, err := w.pods.GetIndexer().ByIndex(podsByNode, node)
	if err != nil {
		return nil
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, obj := range objs {
		if p, ok := obj.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}

// PodIPs returns the addresses of the pods bound to node (not those on the
// host network, whose address is the node's).
func (w *Watcher) PodIPs(node string) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, p := range w.podsOf(node) {
		if p.Spec.HostNetwork {
			continue
		}
		for _, ip := range p.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				out[a.Unmap()] = true
			}
		}
	}
	return out
}

// InternalIPs returns the InternalIP addresses the Node reports.
func (w *Watcher) InternalIPs(name string) []netip.Addr {
	n := w.Node(name)
	if n == nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// NodePodCIDRs returns what the cluster allocated to the node: its
// Node.spec.podCIDRs, and its CiliumNode's spec.ipam.podCIDRs when Cilium
// runs. Unparsable entries are skipped.
func (w *Watcher) NodePodCIDRs(name string) []netip.Prefix {
	var out []netip.Prefix
	if n := w.Node(name); n != nil {
		out = append(out, parsePrefixes(n.Spec.PodCIDRs)...)
	}
	if w.ciliumNodes != nil {
		if obj, ok, err := w.ciliumNodes.GetStore().GetByKey(name); err == nil && ok {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				out = append(out, parsePrefixes(CiliumPodCIDRs(u))...)
			}
		}
	}
	return out
}

func parsePrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// MeshNodes returns every cached MeshNode; objects that do not decode are
// returned as errors for the caller to report. The MeshNodes are the
// cache's own: callers must not change them.
func (w *Watcher) MeshNodes() ([]*v1alpha1.MeshNode, []error) {
	var out []*v1alpha1.MeshNode
	var errs []error
	for _, obj := range w.meshNodes.GetStore().List() {
		switch o := obj.(type) {
		case *v1alpha1.MeshNode:
			out = append(out, o)
		case *undecodable:
			errs = append(errs, o.err)
		}
	}
	return out, errs
}

// MeshNode returns one cached MeshNode (the cache's own, not to be
// changed), or nil.
func (w *Watcher) MeshNode(name string) *v1alpha1.MeshNode {
	obj, ok, err := w.meshNodes.GetStore().GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	mn, _ := obj.(*v1alpha1.MeshNode)
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
