package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wirelace/wirelace/e2e/lab"
)

// TestAPILoss: the API server becomes unreachable for 60 s. Pod traffic
// between nodes never stops (the data plane keeps its last known state),
// each node's status says it is not ready and why, and everything is ready
// again within seconds of the API's return.
func TestAPILoss(t *testing.T) {
	ctx := context.Background()
	l := newLab(t)
	var nodes []*lab.Node
	for _, name := range []string{"a", "b"} {
		n, err := l.AddNode(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start("--heartbeat-interval", "2s"); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	pa, err := nodes[0].AddPod(ctx, "pa")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := nodes[1].AddPod(ctx, "pb")
	if err != nil {
		t.Fatal(err)
	}
	dst := pb.IPs()[0]
	eventually(t, 20*time.Second, "pods reach each other", func() error { return pa.Ping(ctx, dst, 1) })

	pg := startPinger(t, pa, dst)
	if err := l.CutAPI(ctx, true); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	defer l.CutAPI(ctx, false)
	for _, n := range nodes {
		eventually(t, 30*time.Second, n.Name+" says it lost the API", func() error {
			st, err := n.Status(ctx)
			if err != nil {
				return err
			}
			if st.Ready || !strings.Contains(st.Reason, "cannot reach the Kubernetes API") {
				return fmt.Errorf("ready=%v reason=%q", st.Ready, st.Reason)
			}
			return nil
		})
	}
	time.Sleep(time.Until(cut.Add(60 * time.Second)))
	if err := l.CutAPI(ctx, false); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for _, n := range nodes {
		if err := n.WaitReady(ctx, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("ready again %s after the API returned", time.Since(back).Round(10*time.Millisecond))
	times := pg.stop()
	if len(times) < 1000 {
		t.Fatalf("only %d replies over the outage at 20 pps", len(times))
	}
	if gap := maxGap(times); gap > 2*time.Second {
		t.Errorf("pod traffic stopped for %s while the API was away", gap)
	}
}
