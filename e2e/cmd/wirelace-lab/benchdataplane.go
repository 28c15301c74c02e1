package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/e2e/benchreport"
	"github.com/wirelace/wirelace/e2e/lab"
)

// The data plane at scale, alongside the control plane bench: the daemon
// under test (a) has one WireGuard peer per fake node on lace0, plus one
// real node (b). At each size it measures the daemon's Go heap, and what
// a one-peer change costs: one fake node's WireGuard key replaced in its
// MeshNode, timed to the new key on lace0, the daemon's CPU over a fixed
// window, and how many peers it wrote (its own counter). After the
// largest size, the fake MeshNodes are deleted size by size and TCP
// throughput a→b is measured at each, then at the largest size again:
// transfers grow a daemon's memory, so they come after every memory
// figure.
const (
	changeTrials = 5
	// changeWindow is the fixed window a change's CPU is metered over,
	// well above the time a change takes at 1000 peers.
	changeWindow = 2 * time.Second
	// changedFake is the fake node whose key changes; it exists at every
	// size.
	changedFake = 0
)

// dataPlane is the real peer and how to reach it.
type dataPlane struct {
	l    *lab.Lab
	a, b *lab.Node
	bIP  string // b's mesh IP, where its iperf3 server listens
}

// newDataPlane starts the real node b with an iperf3 server and waits for
// a direct path from a.
func newDataPlane(ctx context.Context, l *lab.Lab, a *lab.Node) (*dataPlane, error) {
	b, err := l.AddNode(ctx, "b")
	if err != nil {
		return nil, err
	}
	if err := b.Start(); err != nil {
		return nil, err
	}
	if err := b.WaitReady(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	if err := waitPath(ctx, a, b, "direct"); err != nil {
		return nil, err
	}
	s, err := b.Status(ctx)
	if err != nil {
		return nil, err
	}
	if len(s.MeshIPs) == 0 {
		return nil, fmt.Errorf("node %s has no mesh IP", b.Name)
	}
	if _, err := b.Spawn("iperf3-server", "iperf3", "-s"); err != nil {
		return nil, err
	}
	return &dataPlane{l: l, a: a, b: b, bIP: s.MeshIPs[0]}, nil
}

// measure takes the figures of one size: peers, heap, a one-peer change.
// idlePercent is the daemon's CPU over the quiet window just measured, the
// baseline of a change's CPU.
func (dp *dataPlane) measure(ctx context.Context, idlePercent float64) (*benchreport.ScaleDataPlane, error) {
	out := &benchreport.ScaleDataPlane{}
	keys, err := dp.peerKeys(ctx)
	if err != nil {
		return nil, err
	}
	out.Peers = len(keys)
	m, err := dp.a.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	if out.HeapInuseMiB, err = metricMiB(m, "go_memstats_heap_inuse_bytes"); err != nil {
		return nil, err
	}
	if out.HeapLiveMiB, err = metricMiB(m, "go_gc_heap_live_bytes"); err != nil {
		return nil, err
	}
	if out.Change, err = dp.peerChanges(ctx, idlePercent); err != nil {
		return nil, err
	}
	return out, nil
}

// peerChanges times changeTrials key changes to lace0 (polling `wg show`,
// which costs the daemon a read of every peer), then meters changeTrials
// more by the daemon's CPU and peer writes over changeWindow, untouched.
func (dp *dataPlane) peerChanges(ctx context.Context, idlePercent float64) (benchreport.PeerChange, error) {
	c := benchreport.PeerChange{Trials: changeTrials}
	var visible []time.Duration
	for range changeTrials {
		t0 := time.Now()
		old, key, err := dp.changeKey(ctx)
		if err != nil {
			return c, err
		}
		if err := dp.waitKey(ctx, old, key, time.Minute); err != nil {
			return c, err
		}
		visible = append(visible, time.Since(t0))
	}
	slices.Sort(visible)
	c.VisibleP50Ms, c.VisibleMaxMs = ms(visible[len(visible)/2]), ms(visible[len(visible)-1])

	writes0, err := dp.peerWrites(ctx)
	if err != nil {
		return c, err
	}
	pid := dp.a.PID()
	var cpu float64
	for range changeTrials {
		cpu0 := cpuSeconds([]int{pid})
		old, key, err := dp.changeKey(ctx)
		if err != nil {
			return c, err
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(changeWindow):
		}
		cpu += cpuSeconds([]int{pid}) - cpu0
		// Applied within the window, or the window missed part of it.
		if err := dp.waitKey(ctx, old, key, 0); err != nil {
			return c, fmt.Errorf("a key change took longer than the %s CPU window: %w", changeWindow, err)
		}
	}
	writes1, err := dp.peerWrites(ctx)
	if err != nil {
		return c, err
	}
	c.CPUMs = 1000 * cpu / changeTrials
	c.IdleCPUMs = 1000 * idlePercent / 100 * changeWindow.Seconds()
	c.PeerWrites = (writes1 - writes0) / changeTrials
	return c, nil
}

// changeKey gives the changed fake node a new WireGuard key, as a node
// that re-keys would, and returns its old and new key.
func (dp *dataPlane) changeKey(ctx context.Context) (old, key string, err error) {
	return dp.l.RekeyFakeNode(ctx, changedFake)
}

// waitKey waits until key is a peer of lace0 and old is not: the change
// applied.
func (dp *dataPlane) waitKey(ctx context.Context, old, key string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		keys, err := dp.peerKeys(ctx)
		if err == nil && slices.Contains(keys, key) && !slices.Contains(keys, old) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lace0 of %s: peer %s not replaced by %s after %s (%v)", dp.a.Name, old, key, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// peerKeys lists lace0's peers as `wg show` does.
func (dp *dataPlane) peerKeys(ctx context.Context) ([]string, error) {
	out, err := dp.a.Exec(ctx, "wg", "show", "lace0", "peers")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// peerWrites is the daemon's count of peers written to its device.
func (dp *dataPlane) peerWrites(ctx context.Context) (float64, error) {
	return dp.a.Metric(ctx, "wirelace_wireguard_peer_writes_total")
}

// metricMiB reads an unlabelled gauge in bytes as MiB.
func metricMiB(exposition, name string) (float64, error) {
	v, err := lab.MetricValues(exposition, name)
	if err != nil {
		return 0, err
	}
	b, ok := v[""]
	if !ok {
		return 0, fmt.Errorf("no metric %s", name)
	}
	return b / (1 << 20), nil
}

// throughputs measures a→b at each size, from the largest down, then at
// the largest again: the fake MeshNodes beyond a size are deleted (and at
// the end created again) and lace0 waited to that size's peer count
// first. The load of a shared machine drifts over minutes; measuring the
// largest size before and after the others cancels a steady drift out of
// the comparison. created is how many fake nodes exist.
func (dp *dataPlane) throughputs(ctx context.Context, results []benchreport.Scale, created int) error {
	pids := []int{dp.a.PID(), dp.b.PID()}
	// The first transfer through the daemons fills their buffer pools
	// (page faults, RSS up by tens of MiB): it is run once, uncounted, so
	// that the first size measured does not pay it alone.
	if _, err := iperf(ctx, dp.a, dp.bIP, pids, 0); err != nil {
		return fmt.Errorf("a→b warm-up: %w", err)
	}
	rounds := map[*benchreport.Scale][]iperfResult{}
	measure := func(r *benchreport.Scale) error {
		for range benchRounds {
			// Each side's CPU and the machine's load, printed: which
			// side a slow round cost, or whether the machine was busy.
			ca, cb := cpuSeconds(pids[:1]), cpuSeconds(pids[1:])
			res, err := iperf(ctx, dp.a, dp.bIP, pids, 0)
			if err != nil {
				return fmt.Errorf("a→b with %d peers: %w", r.DataPlane.Peers, err)
			}
			ca, cb = cpuSeconds(pids[:1])-ca, cpuSeconds(pids[1:])-cb
			load, _ := os.ReadFile("/proc/loadavg")
			fmt.Printf("  %4d nodes, %4d peers on lace0: a→b %.2f Gbit/s, CPU-s a %.2f b %.2f, load %s\n",
				r.Nodes, r.DataPlane.Peers, res.Gbps, ca, cb, strings.Join(strings.Fields(string(load))[:3], " "))
			rounds[r] = append(rounds[r], res)
		}
		return nil
	}
	var largest *benchreport.Scale
	var deleted []*unstructured.Unstructured
	for i := len(results) - 1; i >= 0; i-- {
		r := &results[i]
		if r.DataPlane == nil {
			continue
		}
		if largest == nil {
			largest = r
		}
		gone, err := dp.deleteFakes(ctx, r.Nodes, created)
		if err != nil {
			return err
		}
		deleted = append(deleted, gone...)
		created = min(created, r.Nodes)
		if err := dp.waitPeers(ctx, r.DataPlane.Peers); err != nil {
			return err
		}
		if err := measure(r); err != nil {
			return err
		}
	}
	if largest == nil {
		return nil
	}
	if len(deleted) > 0 {
		if err := dp.recreate(ctx, deleted); err != nil {
			return err
		}
		if err := dp.waitPeers(ctx, largest.DataPlane.Peers); err != nil {
			return err
		}
		if err := measure(largest); err != nil {
			return err
		}
	}
	for r, rs := range rounds {
		t := pathThroughput(fmt.Sprintf("a→b, %d peers", r.DataPlane.Peers), rs)
		r.DataPlane.Throughput = &t
	}
	return nil
}

// deleteFakes deletes the MeshNodes of fake nodes [to, from) and returns
// them as they were.
func (dp *dataPlane) deleteFakes(ctx context.Context, to, from int) ([]*unstructured.Unstructured, error) {
	res := dp.l.Dynamic.Resource(v1alpha1.MeshNodeResource)
	gone := make([]*unstructured.Unstructured, max(from-to, 0))
	var g errgroup.Group
	g.SetLimit(16)
	for i := to; i < from; i++ {
		g.Go(func() error {
			name := lab.FakeNodeName(i)
			u, err := res.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("get MeshNode %s: %w", name, err)
			}
			if err := res.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				return fmt.Errorf("delete MeshNode %s: %w", name, err)
			}
			gone[i-to] = u
			return nil
		})
	}
	return gone, g.Wait()
}

// recreate creates MeshNodes deleted by deleteFakes again.
func (dp *dataPlane) recreate(ctx context.Context, objs []*unstructured.Unstructured) error {
	res := dp.l.Dynamic.Resource(v1alpha1.MeshNodeResource)
	var g errgroup.Group
	g.SetLimit(16)
	for _, u := range objs {
		g.Go(func() error {
			u = u.DeepCopy()
			// What the API server assigned the deleted object.
			u.SetResourceVersion("")
			u.SetUID("")
			u.SetCreationTimestamp(metav1.Time{})
			u.SetManagedFields(nil)
			if _, err := res.Create(ctx, u, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create MeshNode %s again: %w", u.GetName(), err)
			}
			return nil
		})
	}
	return g.Wait()
}

// waitPeers waits until lace0 has n peers.
func (dp *dataPlane) waitPeers(ctx context.Context, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		keys, err := dp.peerKeys(ctx)
		if err == nil && len(keys) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lace0 of %s: %d peers, want %d (%v)", dp.a.Name, len(keys), n, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
