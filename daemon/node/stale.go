package node

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/wirelace/wirelace/ipam"
)

// staleTracker decides which pod allocations to free because their pod is
// gone from the API although no CNI DEL came (a lost DEL, a node that
// rebooted). It is pure: callers feed it allocations, pods and the time.
//
// An allocation is freed only after its pod has been missing for the whole
// grace period, so a pod whose object is not in the cache yet (ADD runs
// before the informer sees the pod) or is being recreated never loses its
// address. Allocations without a pod identity (a runtime that is not
// Kubernetes) are never freed here: only DEL or GC free them.
type staleTracker struct {
	grace   time.Duration
	missing map[ipam.Key]time.Time // first time seen without its pod
}

func newStaleTracker(grace time.Duration) *staleTracker {
	return &staleTracker{grace: grace, missing: map[ipam.Key]time.Time{}}
}

// live reports whether pod is one a network attachment may still belong to.
func live(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// Stale returns the keys to release now.
func (s *staleTracker) Stale(allocs []ipam.Allocation, pods []*corev1.Pod, now time.Time) []ipam.Key {
	type ref struct{ ns, name string }
	present := map[ref]string{} // → UID
	for _, p := range pods {
		if live(p) {
			present[ref{p.Namespace, p.Name}] = string(p.UID)
		}
	}
	seen := map[ipam.Key]bool{}
	var out []ipam.Key
	for _, a := range allocs {
		if a.PodName == "" || a.PodNamespace == "" {
			continue
		}
		seen[a.Key] = true
		uid, ok := present[ref{a.PodNamespace, a.PodName}]
		if ok && (a.PodUID == "" || uid == "" || uid == a.PodUID) {
			delete(s.missing, a.Key)
			continue
		}
		first, tracked := s.missing[a.Key]
		if !tracked {
			s.missing[a.Key] = now
			continue
		}
		if now.Sub(first) >= s.grace {
			out = append(out, a.Key)
		}
	}
	for k := range s.missing {
		if !seen[k] {
			delete(s.missing, k)
		}
	}
	return out
}
