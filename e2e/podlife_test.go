package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/e2e/lab"
)

// TestDaemonKilledDuringAdds: SIGKILL the daemon in the middle of a burst
// of ADDs. ADDs that hit the gap fail with "try again later"; the runtime
// retries them; afterwards every pod has exactly one allocation, no address
// is doubled and none is lost.
func TestDaemonKilledDuringAdds(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	n := startPodNodes(t, l, "n1")[0]

	const count = 20
	pods := newPods(t, n, "k", count)
	var wg sync.WaitGroup
	var mu sync.Mutex
	retried := 0
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 25 * time.Millisecond) // a burst, spread over the kill
			deadline := time.Now().Add(60 * time.Second)
			for {
				err := p.Add(ctx)
				if err == nil {
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("%s: ADD never succeeded: %v", p.Name, err)
					return
				}
				mu.Lock()
				retried++
				mu.Unlock()
				time.Sleep(200 * time.Millisecond) // as kubelet retries a failed sandbox
			}
		}()
	}
	time.Sleep(150 * time.Millisecond)
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d ADDs failed during the gap and were retried", retried)
	if retried == 0 {
		t.Fatal("no ADD hit the daemon's gap: the kill did not land inside the burst")
	}

	allocs := allocations(t, n)
	if len(allocs) != count {
		t.Fatalf("%d allocations for %d pods: %v", len(allocs), count, allocs)
	}
	seen := map[string]string{}
	for _, p := range pods {
		ips, ok := allocs[p.ContainerID+"/eth0"]
		if !ok {
			t.Fatalf("%s has no allocation", p.Name)
		}
		if strings.Join(ips, ",") == "" || len(p.IPs()) != 2 {
			t.Fatalf("%s: allocation %v, result %v", p.Name, ips, p.IPs())
		}
		for _, ip := range ips {
			addr := strings.SplitN(ip, "/", 2)[0]
			if other, dup := seen[addr]; dup {
				t.Fatalf("%s and %s share %s", p.Name, other, addr)
			}
			seen[addr] = p.Name
			if !contains(p.IPs(), addr) {
				t.Fatalf("%s: daemon has %s, the pod got %v", p.Name, addr, p.IPs())
			}
		}
	}
	if got := len(hostVeths(t, n)); got != count {
		t.Fatalf("%d veths for %d pods", got, count)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestGCAndLostDEL: CNI GC with a valid-attachment list frees exactly the
// others; a pod deleted from the API without a DEL loses its address after
// the grace period, and a live pod never does.
func TestGCAndLostDEL(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	n, err := l.AddNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	const grace = 3 * time.Second
	if err := n.Start("--ipam-release-grace", grace.String()); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	var pods []*lab.Pod
	for i := 0; i < 4; i++ {
		p, err := n.AddPod(ctx, fmt.Sprintf("g%d", i))
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}

	// GC keeps g0..g2 valid: g3 is freed, its veth removed.
	if err := n.CNIGC(ctx, pods[:3]); err != nil {
		t.Fatal(err)
	}
	allocs := allocations(t, n)
	if len(allocs) != 3 {
		t.Fatalf("after GC: %v, want g0..g2", allocs)
	}
	if _, ok := allocs[pods[3].ContainerID+"/eth0"]; ok {
		t.Fatal("GC kept the attachment that was not valid")
	}

	// g2's Pod object disappears without a DEL (a lost DEL). Forced: there is
	// no kubelet in the lab to finish a graceful deletion, and a pod that is
	// only terminating may still be running, so it keeps its address.
	zero := int64(0)
	if err := l.Core.CoreV1().Pods(lab.PodNamespace).Delete(ctx, pods[2].Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	key := pods[2].ContainerID + "/eth0"
	eventually(t, grace+10*time.Second, "the lost pod's address is freed", func() error {
		if _, ok := allocations(t, n)[key]; ok {
			return errors.New("still allocated")
		}
		return nil
	})
	if waited := time.Since(gone); waited < grace {
		t.Fatalf("freed after %s, before the %s grace period", waited, grace)
	}
	// The live pods kept theirs, and still work.
	allocs = allocations(t, n)
	for _, p := range pods[:2] {
		if _, ok := allocs[p.ContainerID+"/eth0"]; !ok {
			t.Fatalf("live pod %s lost its address", p.Name)
		}
	}
	if err := pods[0].Ping(ctx, pods[1].IPs()[0], 1); err != nil {
		t.Fatalf("live pods cannot talk: %v", err)
	}
}

// TestCheckDetectsDrift: CHECK passes on a healthy pod and fails, saying
// what is wrong, when its host route is removed or its MTU changed.
func TestCheckDetectsDrift(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	n := startPodNodes(t, l, "n1")[0]
	p, err := n.AddPod(ctx, "chk")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(ctx); err != nil {
		t.Fatalf("CHECK on a healthy pod: %v", err)
	}

	routes := podRoutes(t, n)
	if len(routes) == 0 {
		t.Fatal("no host route to the pod")
	}
	v4 := strings.Fields(routes[0])[0]
	if _, err := n.Exec(ctx, "ip", "route", "del", v4); err != nil {
		t.Fatal(err)
	}
	err = p.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), strings.SplitN(v4, "/", 2)[0]) {
		t.Fatalf("CHECK after removing route %s: %v", v4, err)
	}
	t.Logf("CHECK with a missing route: %v", err)

	// Put the route back as it was, then change the MTU.
	if _, err := n.Exec(ctx, append([]string{"ip", "route", "add"}, strings.Fields(routes[0])...)...); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(ctx); err != nil {
		t.Fatalf("CHECK after repair: %v", err)
	}
	if _, err := p.Exec(ctx, "ip", "link", "set", "eth0", "mtu", "1280"); err != nil {
		t.Fatal(err)
	}
	err = p.Check(ctx)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "mtu") {
		t.Fatalf("CHECK after changing the MTU: %v", err)
	}
	t.Logf("CHECK with a changed MTU: %v", err)
}

// TestCNIStatus: STATUS fails, saying why, while the daemon is down, and
// passes once it is ready again.
func TestCNIStatus(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	n := startPodNodes(t, l, "n1")[0]
	if err := n.CNIStatus(ctx); err != nil {
		t.Fatalf("STATUS with a ready daemon: %v", err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	err := n.CNIStatus(ctx)
	if err == nil || !strings.Contains(err.Error(), n.Socket) {
		t.Fatalf("STATUS with the daemon down: %v, want an error naming its socket", err)
	}
	t.Logf("STATUS with the daemon down: %v", err)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "STATUS passes after restart", func() error { return n.CNIStatus(ctx) })
}
