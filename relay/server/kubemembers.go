package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// preflightTimeout bounds the first List of MeshNodes. An informer retries a
// failing List forever without saying why; one plain List first turns a
// missing CRD, missing RBAC or unreachable API server into a clear error.
const preflightTimeout = 15 * time.Second

// syncTimeout bounds the wait for the informer's first full list after the
// preflight List succeeded.
const syncTimeout = time.Minute

// member is what the relay needs from a MeshNode.
type member struct {
	wg, ctl wgtypes.Key
}

// KubeMembers is the mesh membership as the MeshNode objects say, kept
// current by an informer (a watch, never polling). It implements Members
// and ChangeNotifier.
//
// A WireGuard key that appears in more than one MeshNode is refused
// altogether: a node may write only its own MeshNode, but it can put
// another node's public key in it, and the relay cannot tell which of the
// two is genuine. Refusing both is visible (a warning, and the genuine node
// loses only the relay path) where picking one could hand a node's relayed
// traffic to an impostor.
type KubeMembers struct {
	log      *slog.Logger
	client   dynamic.Interface
	factory  dynamicinformer.DynamicSharedInformerFactory
	informer cache.SharedIndexInformer

	mu     sync.RWMutex
	byName map[string]member
	byKey  map[wgtypes.Key]map[string]wgtypes.Key // WireGuard key → MeshNode name → control key
	subs   []func()
}

// NewKubeMembers sets up the MeshNode informer; Start runs it.
func NewKubeMembers(client dynamic.Interface, log *slog.Logger) (*KubeMembers, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &KubeMembers{
		log:    log,
		client: client,
		// No resync: the map below is updated from the watch itself, and
		// replaying the cache would only re-deliver what it already has.
		factory: dynamicinformer.NewDynamicSharedInformerFactory(client, 0),
		byName:  make(map[string]member),
		byKey:   make(map[wgtypes.Key]map[string]wgtypes.Key),
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
	return m, nil
}

// Start checks that MeshNodes can be listed, starts the informer, which runs
// until ctx ends, and waits (at most syncTimeout) for its first full list, so
// the relay refuses nobody just because it has not heard of them yet.
func (m *KubeMembers) Start(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	_, err := m.client.Resource(v1alpha1.MeshNodeResource).List(lctx, metav1.ListOptions{Limit: 1})
	cancel()
	if err != nil {
		return fmt.Errorf("list MeshNodes (is the CRD installed, and may the relay list and watch meshnodes.%s?): %w",
			v1alpha1.GroupVersion.Group, err)
	}
	m.factory.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), m.informer.HasSynced) {
		return fmt.Errorf("MeshNode informer did not sync within %v: %w", syncTimeout, sctx.Err())
	}
	m.log.Info("mesh membership synced", "meshnodes", m.Len())
	return nil
}

// Shutdown waits for the informer's goroutines after Start's ctx has ended.
func (m *KubeMembers) Shutdown() { m.factory.Shutdown() }

// HasSynced reports whether the first full list has arrived.
func (m *KubeMembers) HasSynced() bool { return m.informer.HasSynced() }

// Len is the number of MeshNodes with usable keys.
func (m *KubeMembers) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.byName)
}

// Lookup implements Members.
func (m *KubeMembers) Lookup(wgKey wgtypes.Key) (wgtypes.Key, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	owners := m.byKey[wgKey]
	if len(owners) != 1 {
		return wgtypes.Key{}, false
	}
	for _, ctl := range owners {
		return ctl, true
	}
	return wgtypes.Key{}, false
}

// Subscribe implements ChangeNotifier. changed is called from the informer's
// goroutine and must not block.
func (m *KubeMembers) Subscribe(changed func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs = append(m.subs, changed)
}

func (m *KubeMembers) upsert(obj any) {
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

func (m *KubeMembers) remove(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		m.set(t.Key, nil) // cluster-scoped: the key is the name
		return
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		m.set(u.GetName(), nil)
	}
}

// set records name's keys (nil: not a member) and tells subscribers when
// that changed anything.
func (m *KubeMembers) set(name string, mem *member) {
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
