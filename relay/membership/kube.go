// Package membership is who the relay serves, as the cluster says: the
// MeshNodes whose Nodes exist, kept current by informers. It is the only
// part of the relay that talks to Kubernetes; the server sees it through
// its small Members interface.
package membership

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// preflightTimeout bounds the first List of MeshNodes and of Nodes. An
// informer retries a failing List forever without saying why; one plain
// List first turns a missing CRD, missing RBAC or unreachable API server into
// a clear error.
const preflightTimeout = 15 * time.Second

// syncTimeout bounds the wait for the informers' first full lists after the
// preflight Lists succeeded.
const syncTimeout = time.Minute

// nodeResource is core/v1 Nodes.
var nodeResource = corev1.SchemeGroupVersion.WithResource("nodes")

// member is what the relay needs from a MeshNode.
type member struct {
	wg, ctl wgtypes.Key
}

// Kube is the mesh membership as the MeshNode and Node objects say,
// kept current by informers (watches, never polling). It implements the relay
// server's Members and ChangeNotifier.
//
// A MeshNode counts only while the Node of the same name exists. Nodes
// write their own MeshNodes, so a compromised node's credentials may be
// able to create MeshNodes for nodes that do not exist; without this rule
// each would be a relay session the attacker holds. Nodes themselves are
// registered by kubelets and guarded by the API server's node admission, so
// a Node is the better evidence that a machine is part of the cluster.
//
// A WireGuard key that appears in more than one MeshNode is refused
// altogether, whether or not their Nodes exist: a node may write only its
// own MeshNode, but it can put another node's public key in it, and the
// relay cannot tell which of the two is genuine (a genuine node's Node may
// be briefly gone while it re-registers). Refusing both is visible (a
// warning, and the genuine node loses only the relay path) where picking
// one could hand a node's relayed traffic to an impostor.
type Kube struct {
	log    *slog.Logger
	client dynamic.Interface
	meta   metadata.Interface

	factory      dynamicinformer.DynamicSharedInformerFactory
	nodeFactory  metadatainformer.SharedInformerFactory
	informer     cache.SharedIndexInformer
	nodeInformer cache.SharedIndexInformer

	mu     sync.RWMutex
	byName map[string]member                      // MeshNodes with usable keys
	byKey  map[wgtypes.Key]map[string]wgtypes.Key // WireGuard key → MeshNode name → control key
	nodes  map[string]struct{}                    // names of the Nodes that exist
	subs   []func()
}

// NewKube sets up the MeshNode informer, on client, and the Node
// informer, on meta (Node metadata is all it needs); Start runs them.
func NewKube(client dynamic.Interface, meta metadata.Interface, log *slog.Logger) (*Kube, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Kube{
		log:    log,
		client: client,
		meta:   meta,
		// No resync: the maps below are updated from the watches
		// themselves, and replaying the caches would only re-deliver what
		// they already have.
		factory:     dynamicinformer.NewDynamicSharedInformerFactory(client, 0),
		nodeFactory: metadatainformer.NewSharedInformerFactoryWithOptions(meta, 0, metadatainformer.WithTransform(nodeNameOnly)),
		byName:      make(map[string]member),
		byKey:       make(map[wgtypes.Key]map[string]wgtypes.Key),
		nodes:       make(map[string]struct{}),
	}
	m.informer = m.factory.ForResource(v1alpha1.MeshNodeResource).Informer()
	_, err := m.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.upsert(obj) },
		UpdateFunc: func(_, obj any) { m.upsert(obj) },
		DeleteFunc: m.remove,
	})
	if err != nil {
		return nil, fmt.Errorf("watch MeshNodes: %w", err)
	}
	m.nodeInformer = m.nodeFactory.ForResource(nodeResource).Informer()
	_, err = m.nodeInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		// A Node's updates (status, labels) never change its name, which
		// is all that matters here.
		AddFunc: func(obj any) {
			if name, ok := objectName(obj); ok {
				m.setNode(name, true)
			}
		},
		DeleteFunc: func(obj any) {
			if name, ok := objectName(obj); ok {
				m.setNode(name, false)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watch Nodes: %w", err)
	}
	return m, nil
}

// nodeNameOnly keeps of a Node's metadata what the relay uses (the name) and
// what the informer needs (UID, resourceVersion). Node labels, annotations
// and managedFields are large, and a relay caches every Node of the cluster.
func nodeNameOnly(obj any) (any, error) {
	pm, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil // a tombstone: it carries only a key
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta:   pm.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: pm.Name, UID: pm.UID, ResourceVersion: pm.ResourceVersion},
	}, nil
}

// Start checks that MeshNodes and Nodes can be listed, starts the informers,
// which run until ctx ends, and waits (at most syncTimeout) for their first
// full lists, so the relay refuses nobody just because it has not heard of
// them yet.
func (m *Kube) Start(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	if _, err := m.client.Resource(v1alpha1.MeshNodeResource).List(lctx, metav1.ListOptions{Limit: 1}); err != nil {
		return fmt.Errorf("list MeshNodes (is the CRD installed, and may the relay list and watch meshnodes.%s?): %w",
			v1alpha1.GroupVersion.Group, err)
	}
	if _, err := m.meta.Resource(nodeResource).List(lctx, metav1.ListOptions{Limit: 1}); err != nil {
		return fmt.Errorf("list Nodes (may the relay list and watch nodes?): %w", err)
	}
	m.factory.Start(ctx.Done())
	m.nodeFactory.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), m.informer.HasSynced, m.nodeInformer.HasSynced) {
		return fmt.Errorf("MeshNode and Node informers did not sync within %v: %w", syncTimeout, sctx.Err())
	}
	m.log.Info("mesh membership synced", "members", m.Len())
	return nil
}

// Shutdown waits for the informers' goroutines after Start's ctx has ended.
func (m *Kube) Shutdown() {
	m.factory.Shutdown()
	m.nodeFactory.Shutdown()
}

// HasSynced reports whether the first full lists have arrived.
func (m *Kube) HasSynced() bool {
	return m.informer.HasSynced() && m.nodeInformer.HasSynced()
}

// Len is the number of members: MeshNodes with usable keys whose Node
// exists.
func (m *Kube) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for name := range m.byName {
		if _, ok := m.nodes[name]; ok {
			n++
		}
	}
	return n
}

// Lookup implements server.Members: the one MeshNode with wgKey, if its Node exists.
func (m *Kube) Lookup(wgKey wgtypes.Key) (wgtypes.Key, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	owners := m.byKey[wgKey]
	if len(owners) != 1 {
		return wgtypes.Key{}, false
	}
	for name, ctl := range owners {
		if _, ok := m.nodes[name]; !ok {
			return wgtypes.Key{}, false
		}
		return ctl, true
	}
	return wgtypes.Key{}, false
}

// Subscribe implements server.ChangeNotifier. changed is called from the informers'
// goroutines and must not block.
func (m *Kube) Subscribe(changed func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs = append(m.subs, changed)
}

func (m *Kube) upsert(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	mem, err := decodeMember(u)
	if err != nil {
		// Not a member until fixed; the MeshNode's owner sees the same
		// validation problem elsewhere.
		m.log.Warn("ignoring MeshNode with unusable keys", "meshnode", u.GetName(), "err", err)
		m.set(u.GetName(), nil)
		return
	}
	m.set(u.GetName(), &mem)
}

func (m *Kube) remove(obj any) {
	if name, ok := objectName(obj); ok {
		m.set(name, nil)
	}
}

// objectName is the name of an object an informer delivers, including the
// final state of one deleted while its watch was down.
func objectName(obj any) (string, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Key, true // cluster-scoped: the key is the name
	}
	if o, ok := obj.(metav1.Object); ok {
		return o.GetName(), true
	}
	return "", false
}

// setNode records whether the Node name exists and, when that changes the
// membership of its MeshNode, tells subscribers.
func (m *Kube) setNode(name string, exists bool) {
	m.mu.Lock()
	_, had := m.nodes[name]
	if had == exists {
		m.mu.Unlock()
		return
	}
	if exists {
		m.nodes[name] = struct{}{}
	} else {
		delete(m.nodes, name)
	}
	_, hasMeshNode := m.byName[name]
	subs := slices.Clone(m.subs)
	m.mu.Unlock()

	if hasMeshNode {
		m.notify(subs)
	}
}

// set records name's keys (nil: not a member) and tells subscribers when
// that changed anything.
func (m *Kube) set(name string, mem *member) {
	m.mu.Lock()
	old, had := m.byName[name]
	if had && mem != nil && old == *mem {
		m.mu.Unlock()
		return
	}
	if had {
		delete(m.byName, name)
		if owners := m.byKey[old.wg]; owners != nil {
			delete(owners, name)
			if len(owners) == 0 {
				delete(m.byKey, old.wg)
			}
		}
	}
	var conflict []string
	if mem != nil {
		m.byName[name] = *mem
		owners := m.byKey[mem.wg]
		if owners == nil {
			owners = make(map[string]wgtypes.Key)
			m.byKey[mem.wg] = owners
		}
		owners[name] = mem.ctl
		if len(owners) > 1 {
			for n := range owners {
				conflict = append(conflict, n)
			}
			slices.Sort(conflict)
		}
	}
	subs := slices.Clone(m.subs)
	m.mu.Unlock()

	if conflict != nil {
		m.log.Warn("several MeshNodes claim one WireGuard key; the relay refuses it until only one does",
			"peer", shortKey(mem.wg), "meshnodes", conflict)
	}
	if !had && mem == nil {
		return
	}
	m.notify(subs)
}

func (m *Kube) notify(subs []func()) {
	for _, fn := range subs {
		fn()
	}
}

func decodeMember(u *unstructured.Unstructured) (member, error) {
	var mn v1alpha1.MeshNode
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), &mn); err != nil {
		return member{}, fmt.Errorf("decode MeshNode: %w", err)
	}
	wg, err := wgtypes.ParseKey(mn.Spec.PublicKey)
	if err != nil {
		return member{}, fmt.Errorf("spec.publicKey: %w", err)
	}
	ctl, err := wgtypes.ParseKey(mn.Spec.ControlKey)
	if err != nil {
		return member{}, fmt.Errorf("spec.controlKey: %w", err)
	}
	return member{wg: wg, ctl: ctl}, nil
}

// shortKey is the form of a key in logs: the first 8 characters of its
// base64, as the relay server logs it.
func shortKey(k wgtypes.Key) string { return k.String()[:8] }
