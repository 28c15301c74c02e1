package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/wirelace/wirelace/e2e/lab"
)

// TestMemoryReturnsAfterBulkTraffic: a bulk TCP transfer through lace0
// grows both daemons' Go heaps (wireguard-go takes a 64 KiB buffer for
// every packet in flight), and soon after the traffic stops each daemon
// gives that memory back to the OS (internal/memtrim). It reads the heap
// the runtime holds rather than RSS, which the race detector's shadow
// memory of `make test`'s builds would blur.
func TestMemoryReturnsAfterBulkTraffic(t *testing.T) {
	l := newLab(t)
	nodes := startNodes(t, l, "n1", "n2")
	n1, n2 := nodes[0], nodes[1]
	ctx := context.Background()

	held := func(n *lab.Node) float64 {
		t.Helper()
		var mib float64
		for name, sign := range map[string]float64{
			"go_memstats_heap_inuse_bytes": 1, "go_memstats_heap_idle_bytes": 1, "go_memstats_heap_released_bytes": -1,
		} {
			v, err := n.Metric(ctx, name)
			if err != nil {
				t.Fatalf("%s: %v", n.Name, err)
			}
			mib += sign * v / (1 << 20)
		}
		return mib
	}
	rest := map[*lab.Node]float64{n1: held(n1), n2: held(n2)}

	if _, err := n2.Spawn("iperf3-server", "iperf3", "-s"); err != nil {
		t.Fatal(err)
	}
	ip := status(t, n2).MeshIPs[0]
	eventually(t, 30*time.Second, "a 5 s iperf3 transfer from n1 to n2", func() error {
		_, err := n1.Exec(ctx, "iperf3", "-c", ip, "-t", "5")
		return err
	})
	for _, n := range nodes {
		// Without growth the test below would prove nothing.
		if after := held(n); after < rest[n]+16 {
			t.Fatalf("%s: the heap held %.0f MiB at rest and %.0f MiB right after the transfer; want it grown", n.Name, rest[n], after)
		}
	}

	// memtrim trims 20-30 s after the traffic stops, once its checks find
	// the heap quiet: polled slowly, as each scrape of /metrics allocates
	// too.
	deadline := time.Now().Add(90 * time.Second)
	for _, n := range nodes {
		for {
			trims, err := n.Metric(ctx, "wirelace_memory_trims_total")
			if err != nil {
				t.Fatal(err)
			}
			now := held(n)
			if trims > 0 && now <= rest[n]+24 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %.0f trims 90 s after the transfer; the heap holds %.0f MiB, at rest %.0f MiB", n.Name, trims, now, rest[n])
			}
			time.Sleep(5 * time.Second)
		}
	}
}
