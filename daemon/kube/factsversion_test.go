package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// An event moves the version of the node it is about and no other; one
// whose node cannot be told moves every node's.
func TestFactsVersions(t *testing.T) {
	var v factsVersions
	a0, b0 := v.get("a"), v.get("b")
	v.bump(factsNode(&v1alpha1.IPClaim{Spec: v1alpha1.IPClaimSpec{NodeName: "a"}}))
	if v.get("a") == a0 || v.get("b") != b0 {
		t.Fatalf("an IPClaim of a: a %v→%v, b %v→%v", a0, v.get("a"), b0, v.get("b"))
	}
	a1 := v.get("a")
	v.bump(factsNode(cache.DeletedFinalStateUnknown{Obj: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "b"}}}))
	if v.get("a") != a1 || v.get("b") == b0 {
		t.Fatal("a deleted Node b must move b's version only")
	}
	a2, b2 := v.get("a"), v.get("b")
	v.bump(factsNode(&undecodable{}))
	if v.get("a") == a2 || v.get("b") == b2 || v.get("c") == (FactsVersion{}) {
		t.Fatal("an object that did not decode must move every node's version")
	}
}
