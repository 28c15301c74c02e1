package membership

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/relay/internal/relaytest"
	"github.com/wirelace/wirelace/relay/server"
)

func meshNode(t *testing.T, name string, wg, ctl wgtypes.Key) *unstructured.Unstructured {
	return meshNodeRaw(t, name, wg.String(), ctl.String())
}

func meshNodeRaw(t *testing.T, name, wg, ctl string) *unstructured.Unstructured {
	t.Helper()
	mn := &v1alpha1.MeshNode{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.MeshNodeSpec{PublicKey: wg, ControlKey: ctl, MeshIPs: []string{"100.64.0.1"}},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(mn)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind("MeshNode")
	return u
}

func newFakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{v1alpha1.MeshNodeResource: "MeshNodeList"}, objs...)
}

// fakeNodes is the Node metadata API with the named Nodes in it.
type fakeNodes struct {
	*metadatafake.FakeMetadataClient
}

func newFakeNodes(t *testing.T, names ...string) fakeNodes {
	t.Helper()
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for _, n := range names {
		objs = append(objs, nodeObject(n))
	}
	return fakeNodes{metadatafake.NewSimpleMetadataClient(scheme, objs...)}
}

func nodeObject(name string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
	}
}

func (f fakeNodes) create(t *testing.T, name string) {
	t.Helper()
	if _, err := f.Resource(nodeResource).(metadatafake.MetadataClient).CreateFake(nodeObject(name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (f fakeNodes) delete(t *testing.T, name string) {
	t.Helper()
	if err := f.Resource(nodeResource).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func startKube(t *testing.T, dyn *dynamicfake.FakeDynamicClient, nodes fakeNodes) *Kube {
	t.Helper()
	m, err := NewKube(dyn, nodes, relaytest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		m.Shutdown()
	})
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

// relay is a relay server under test, serving m's members on a loopback
// port until the test ends.
type relay struct {
	srv  *server.Server
	addr string
}

func startRelay(t *testing.T, m *Kube) relay {
	t.Helper()
	srv, err := server.New(server.Config{Members: m, Logger: relaytest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := relaytest.Serve(t, srv.Serve)
	return relay{srv: srv, addr: addr}
}

func TestKube(t *testing.T) {
	a := relaytest.NewNode(t)
	b := relaytest.NewNode(t)
	dyn := newFakeDynamic(meshNode(t, "a", a.WG, a.Ctl.PublicKey()))
	m := startKube(t, dyn, newFakeNodes(t, "a", "b", "broken"))
	var changes atomic.Int32
	m.Subscribe(func() { changes.Add(1) })
	mn := dyn.Resource(v1alpha1.MeshNodeResource)
	ctx := context.Background()

	if ctl, ok := m.Lookup(a.WG); !ok || ctl != a.Ctl.PublicKey() {
		t.Fatalf("a from the initial list: %v %v", ctl, ok)
	}
	if _, ok := m.Lookup(b.WG); ok {
		t.Fatalf("b found before it exists")
	}

	// Created: found, and subscribers hear of it.
	if _, err := mn.Create(ctx, meshNode(t, "b", b.WG, b.Ctl.PublicKey()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, "b to appear", 5*time.Second, func() bool { _, ok := m.Lookup(b.WG); return ok })
	relaytest.WaitFor(t, "a change notice", 5*time.Second, func() bool { return changes.Load() >= 1 })

	// Control key rotated: the new one is returned.
	rotated := relaytest.NewKey(t).PublicKey()
	if _, err := mn.Update(ctx, meshNode(t, "b", b.WG, rotated), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, "b's new control key", 5*time.Second, func() bool { ctl, _ := m.Lookup(b.WG); return ctl == rotated })

	// Another MeshNode claims a's WireGuard key: a is refused until that
	// is resolved, even though the impostor has no Node (a genuine node's
	// Node may be briefly gone while it re-registers).
	if _, err := mn.Create(ctx, meshNode(t, "impostor", a.WG, relaytest.NewKey(t).PublicKey()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, "a to be refused while contested", 5*time.Second, func() bool { _, ok := m.Lookup(a.WG); return !ok })
	if err := mn.Delete(ctx, "impostor", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, "a to be back", 5*time.Second, func() bool { _, ok := m.Lookup(a.WG); return ok })

	// Unusable keys: not a member.
	if _, err := mn.Create(ctx, meshNodeRaw(t, "broken", "not-a-key", a.Ctl.PublicKey().String()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Deleted: gone.
	if err := mn.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, "b to go", 5*time.Second, func() bool { _, ok := m.Lookup(b.WG); return !ok })
	if got := m.Len(); got != 1 {
		t.Fatalf("Len = %d, want 1 (a only)", got)
	}
}

func TestKubePreflight(t *testing.T) {
	// Without RBAC for MeshNodes an informer would retry forever in
	// silence; Start fails at once and says what to check.
	forbidden := func(gr schema.GroupResource) k8stesting.ReactionFunc {
		return func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(gr, "", errors.New("no RBAC"))
		}
	}
	start := func(dyn *dynamicfake.FakeDynamicClient, nodes fakeNodes) error {
		m, err := NewKube(dyn, nodes, relaytest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return m.Start(ctx)
	}

	dyn := newFakeDynamic()
	dyn.PrependReactor("list", "meshnodes", forbidden(v1alpha1.MeshNodeResource.GroupResource()))
	err := start(dyn, newFakeNodes(t))
	if err == nil || !strings.Contains(err.Error(), "list and watch meshnodes") || !apierrors.IsForbidden(err) {
		t.Fatalf("got %v, want a forbidden error that names the permission", err)
	}

	// The relay's ClusterRole needs Nodes too.
	nodes := newFakeNodes(t)
	nodes.PrependReactor("list", "nodes", forbidden(nodeResource.GroupResource()))
	err = start(newFakeDynamic(), nodes)
	if err == nil || !strings.Contains(err.Error(), "list and watch nodes") || !apierrors.IsForbidden(err) {
		t.Fatalf("got %v, want a forbidden error that names the Node permission", err)
	}
}

// The whole path: a MeshNode deleted in the API closes its relay session.
func TestKubeRevokeClosesConnection(t *testing.T) {
	a, b := relaytest.NewNode(t), relaytest.NewNode(t)
	dyn := newFakeDynamic(
		meshNode(t, "a", a.WG, a.Ctl.PublicKey()),
		meshNode(t, "b", b.WG, b.Ctl.PublicKey()),
	)
	m := startKube(t, dyn, newFakeNodes(t, "a", "b"))
	ts := startRelay(t, m)
	ca, cb := relaytest.Connect(t, ts.addr, a), relaytest.Connect(t, ts.addr, b)

	if err := dyn.Resource(v1alpha1.MeshNodeResource).Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if reason := ca.ExpectClosed(5 * time.Second); !strings.Contains(reason, "MeshNode removed") {
		t.Fatalf("closed with %q, want a ServerClose about membership", reason)
	}
	if err := cb.KeepAlive(); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, "a to be unregistered", 5*time.Second, func() bool {
		cs := ts.srv.Clients()
		return len(cs) == 1 && cs[0].Key == b.WG
	})
}

// A MeshNode counts only while its Node exists: credentials that can write
// MeshNodes cannot conjure relay members for machines the cluster does not
// have, and a Node deleted takes its MeshNode's membership with it.
func TestKubeNeedNode(t *testing.T) {
	a := relaytest.NewNode(t)
	dyn := newFakeDynamic(meshNode(t, "a", a.WG, a.Ctl.PublicKey()))
	nodes := newFakeNodes(t)
	m := startKube(t, dyn, nodes)
	var changes atomic.Int32
	m.Subscribe(func() { changes.Add(1) })

	if _, ok := m.Lookup(a.WG); ok {
		t.Fatalf("MeshNode without a Node is a member")
	}
	nodes.create(t, "a")
	relaytest.WaitFor(t, "a to become a member with its Node", 5*time.Second, func() bool {
		ctl, ok := m.Lookup(a.WG)
		return ok && ctl == a.Ctl.PublicKey()
	})
	if changes.Load() == 0 {
		t.Errorf("no change notice when the Node appeared")
	}
	if got := m.Len(); got != 1 {
		t.Errorf("Len = %d, want 1", got)
	}

	// A Node without a MeshNode changes nothing, and says so to nobody.
	before := changes.Load()
	nodes.create(t, "unrelated")
	nodes.delete(t, "unrelated")
	nodes.delete(t, "a")
	relaytest.WaitFor(t, "a to lose membership with its Node", 5*time.Second, func() bool { _, ok := m.Lookup(a.WG); return !ok })
	if got := changes.Load() - before; got != 1 {
		t.Errorf("%d change notices for the Node deletions, want 1 (for a)", got)
	}
	if got := m.Len(); got != 0 {
		t.Errorf("Len = %d, want 0", got)
	}
}

// The attack end to end: a compromised node's credentials create a MeshNode
// for a node that does not exist, with keys the attacker holds. The relay
// refuses the session; and a real member whose Node is deleted loses its
// session.
func TestKubeNodelessMeshNodeRefused(t *testing.T) {
	a, b, ghost := relaytest.NewNode(t), relaytest.NewNode(t), relaytest.NewNode(t)
	dyn := newFakeDynamic(
		meshNode(t, "a", a.WG, a.Ctl.PublicKey()),
		meshNode(t, "b", b.WG, b.Ctl.PublicKey()),
	)
	nodes := newFakeNodes(t, "a", "b")
	m := startKube(t, dyn, nodes)
	ts := startRelay(t, m)
	ca, cb := relaytest.Connect(t, ts.addr, a), relaytest.Connect(t, ts.addr, b)

	if _, err := dyn.Resource(v1alpha1.MeshNodeResource).Create(context.Background(),
		meshNode(t, "ghost", ghost.WG, ghost.Ctl.PublicKey()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, "the ghost MeshNode to be recorded", 5*time.Second, func() bool {
		m.mu.RLock()
		defer m.mu.RUnlock()
		_, ok := m.byName["ghost"]
		return ok
	})
	if err := relaytest.Dial(t, ts.addr).Auth(ghost); err == nil || !strings.Contains(err.Error(), "in no MeshNode") {
		t.Fatalf("MeshNode without a Node: got %v, want a refusal", err)
	}

	nodes.delete(t, "a")
	if reason := ca.ExpectClosed(5 * time.Second); !strings.Contains(reason, "Node removed") {
		t.Fatalf("closed with %q, want a ServerClose about membership", reason)
	}
	if err := ca.Conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := relaytest.Dial(t, ts.addr).Auth(a); err == nil {
		t.Fatalf("member whose Node is gone authenticated again")
	}
	// b is untouched.
	if err := cb.KeepAlive(); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, "a to be unregistered", 5*time.Second, func() bool {
		cs := ts.srv.Clients()
		return len(cs) == 1 && cs[0].Key == b.WG
	})
}
