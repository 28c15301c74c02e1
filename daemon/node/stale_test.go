package node

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/wirelace/wirelace/ipam"
)

func pod(ns, name, uid string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

func alloc(id, ns, name, uid string) ipam.Allocation {
	a := ipam.Allocation{Key: ipam.Key{ContainerID: id, IfName: "eth0"}}
	a.PodNamespace, a.PodName, a.PodUID = ns, name, uid
	return a
}

func TestStaleTracker(t *testing.T) {
	grace := 10 * time.Second
	s := newStaleTracker(grace)
	t0 := time.Unix(1000, 0)
	allocs := []ipam.Allocation{
		alloc("live", "default", "web", "u1"),
		alloc("gone", "default", "old", "u2"),
		alloc("recreated", "default", "db", "u3"), // pod now has another UID
		alloc("done", "default", "job", "u4"),
		alloc("noidentity", "", "", ""),
	}
	pods := []*corev1.Pod{
		pod("default", "web", "u1", corev1.PodRunning),
		pod("default", "db", "u9", corev1.PodRunning),
		pod("default", "job", "u4", corev1.PodSucceeded),
	}
	if got := s.Stale(allocs, pods, t0); len(got) != 0 {
		t.Fatalf("freed %v at first sight; the grace period must pass first", got)
	}
	if got := s.Stale(allocs, pods, t0.Add(grace-time.Second)); len(got) != 0 {
		t.Fatalf("freed %v before the grace period ended", got)
	}
	got := s.Stale(allocs, pods, t0.Add(grace))
	want := map[string]bool{"gone": true, "recreated": true, "done": true}
	if len(got) != len(want) {
		t.Fatalf("freed %v, want %v", got, want)
	}
	for _, k := range got {
		if !want[k.ContainerID] {
			t.Fatalf("freed %s, a live pod's or an unmanaged allocation", k.ContainerID)
		}
	}

	// A pod that comes back within the grace period resets its clock.
	s = newStaleTracker(grace)
	a := []ipam.Allocation{alloc("x", "default", "late", "")}
	s.Stale(a, nil, t0)
	s.Stale(a, []*corev1.Pod{pod("default", "late", "u5", corev1.PodPending)}, t0.Add(5*time.Second))
	if got := s.Stale(a, nil, t0.Add(12*time.Second)); len(got) != 0 {
		t.Fatalf("freed %v though its pod was seen 7s ago", got)
	}
}
