package kube

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A renewal is one request once the Lease exists; the Lease is read again
// only when it changed or vanished behind the renewer's back.
func TestLeaseRenewsWithOneRequest(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	l := NewLease(Clients{Core: cs}, "wirelace-system")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u1"}}
	verbs := func() []string {
		var out []string
		for _, a := range cs.Actions() {
			out = append(out, a.GetVerb())
		}
		cs.ClearActions()
		return out
	}

	if err := l.Renew(ctx, node, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := verbs(); !slices.Equal(got, []string{"get", "create"}) {
		t.Fatalf("first renewal: %v, want get, create", got)
	}
	for i := 0; i < 3; i++ {
		if err := l.Renew(ctx, node, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := verbs(); !slices.Equal(got, []string{"update"}) {
			t.Fatalf("renewal %d: %v, want one update", i+2, got)
		}
	}
	lease, err := cs.CoordinationV1().Leases("wirelace-system").Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *lease.Spec.HolderIdentity != "n1" || *lease.Spec.LeaseDurationSeconds != 40 || len(lease.OwnerReferences) != 1 || lease.OwnerReferences[0].UID != "u1" {
		t.Fatalf("lease %+v", lease)
	}

	// Deleted behind its back: the update fails, the renewer reads and
	// creates it again, within the same renewal.
	if err := cs.CoordinationV1().Leases("wirelace-system").Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cs.ClearActions()
	if err := l.Renew(ctx, node, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := verbs(); !slices.Equal(got, []string{"update", "get", "create"}) {
		t.Fatalf("after a delete: %v, want update, get, create", got)
	}
}
