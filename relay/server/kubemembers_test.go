package server

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
	k8stesting "k8s.io/client-go/testing"

	"github.com/wirelace/wirelace/api/v1alpha1"
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

func startKubeMembers(t *testing.T, dyn *dynamicfake.FakeDynamicClient) *KubeMembers {
	t.Helper()
	m, err := NewKubeMembers(dyn, testLogger(t))
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

func TestKubeMembers(t *testing.T) {
	a := newNode(t, nil)
	b := newNode(t, nil)
	dyn := newFakeDynamic(meshNode(t, "a", a.wg, a.ctl.PublicKey()))
	m := startKubeMembers(t, dyn)
	var changes atomic.Int32
	m.Subscribe(func() { changes.Add(1) })
	mn := dyn.Resource(v1alpha1.MeshNodeResource)
	ctx := context.Background()

	if ctl, ok := m.Lookup(a.wg); !ok || ctl != a.ctl.PublicKey() {
		t.Fatalf("a from the initial list: %v %v", ctl, ok)
	}
	if _, ok := m.Lookup(b.wg); ok {
		t.Fatalf("b found before it exists")
	}

	// Created: found, and subscribers hear of it.
	if _, err := mn.Create(ctx, meshNode(t, "b", b.wg, b.ctl.PublicKey()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to appear", 5*time.Second, func() bool { _, ok := m.Lookup(b.wg); return ok })
	waitFor(t, "a change notice", 5*time.Second, func() bool { return changes.Load() >= 1 })

	// Control key rotated: the new one is returned.
	rotated := newKey(t).PublicKey()
	if _, err := mn.Update(ctx, meshNode(t, "b", b.wg, rotated), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's new control key", 5*time.Second, func() bool { ctl, _ := m.Lookup(b.wg); return ctl == rotated })

	// Another MeshNode claims a's WireGuard key: a is refused until that
	// is resolved.
	if _, err := mn.Create(ctx, meshNode(t, "impostor", a.wg, newKey(t).PublicKey()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to be refused while contested", 5*time.Second, func() bool { _, ok := m.Lookup(a.wg); return !ok })
	if err := mn.Delete(ctx, "impostor", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to be back", 5*time.Second, func() bool { _, ok := m.Lookup(a.wg); return ok })

	// Unusable keys: not a member.
	if _, err := mn.Create(ctx, meshNodeRaw(t, "broken", "not-a-key", a.ctl.PublicKey().String()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Deleted: gone.
	if err := mn.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to go", 5*time.Second, func() bool { _, ok := m.Lookup(b.wg); return !ok })
	if got := m.Len(); got != 1 {
		t.Fatalf("Len = %d, want 1 (a only)", got)
	}
}

func TestKubeMembersPreflight(t *testing.T) {
	// Without RBAC for MeshNodes an informer would retry forever in
	// silence; Start fails at once and says what to check.
	dyn := newFakeDynamic()
	dyn.PrependReactor("list", "meshnodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(v1alpha1.MeshNodeResource.GroupResource(), "", errors.New("no RBAC"))
	})
	m, err := NewKubeMembers(dyn, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = m.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "list and watch meshnodes") || !apierrors.IsForbidden(err) {
		t.Fatalf("got %v, want a forbidden error that names the permission", err)
	}
}

// The whole path: a MeshNode deleted in the API closes its relay session.
func TestKubeMembersRevokeClosesConnection(t *testing.T) {
	a, b := newNode(t, nil), newNode(t, nil)
	dyn := newFakeDynamic(
		meshNode(t, "a", a.wg, a.ctl.PublicKey()),
		meshNode(t, "b", b.wg, b.ctl.PublicKey()),
	)
	m := startKubeMembers(t, dyn)
	ts := startServer(t, Config{Members: m})
	ca, cb := connect(t, ts.addr, a), connect(t, ts.addr, b)

	if err := dyn.Resource(v1alpha1.MeshNodeResource).Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if reason := ca.expectClosed(5 * time.Second); !strings.Contains(reason, "MeshNode removed") {
		t.Fatalf("closed with %q, want a ServerClose about membership", reason)
	}
	must(t, cb.keepAlive())
	waitFor(t, "a to be unregistered", 5*time.Second, func() bool {
		cs := ts.srv.Clients()
		return len(cs) == 1 && cs[0].Key == b.wg
	})
}
