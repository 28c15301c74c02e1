package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wirelace/wirelace/e2e/benchreport"
	"github.com/wirelace/wirelace/e2e/lab"
)

// CNI ADD latency on one node through libcni, as a runtime calls it:
// cniPods pods at cniConcurrency at a time, the wirelace plugins against
// the reference ptp + host-local (IPv4 only, as the reference is set up
// here) in the same run, first with no peers and then with cniPeers fake
// peers in the mesh: an ADD must not cost more with more peers.
const (
	cniPods        = 40
	cniConcurrency = 8
	cniPeers       = 200
)

func benchCNI(ctx context.Context, root string) error {
	say("CNI ADD: %d pods, %d at a time, wirelace against ptp + host-local, with 0 and %d peers", cniPods, cniConcurrency, cniPeers)
	var res benchreport.CNIAdd
	err := withLab(ctx, lab.Options{Root: root}, false, func(l *lab.Lab) error {
		n, err := l.AddNode(ctx, "a")
		if err != nil {
			return err
		}
		if err := n.Start(); err != nil {
			return err
		}
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			return err
		}
		ptp := ptpConfList(n)
		round := func(peers int) error {
			for _, c := range []struct {
				name string
				conf []byte
			}{{"ptp + host-local", ptp}, {"wirelace", n.ConfList()}} {
				d, err := addPods(ctx, n, fmt.Sprintf("p%d-%s", peers, c.name[:3]), c.conf)
				if err != nil {
					return err
				}
				r := benchreport.CNIRun{Plugin: c.name, Peers: peers, Ms: d}
				sorted := slices.Sorted(slices.Values(d))
				r.P50Ms, r.P99Ms = sorted[len(sorted)/2], sorted[len(sorted)*99/100]
				fmt.Printf("  %-18s %4d peers: p50 %6.1f ms, p99 %6.1f ms\n", c.name, peers, r.P50Ms, r.P99Ms)
				res.Runs = append(res.Runs, r)
			}
			return nil
		}
		if err := round(0); err != nil {
			return err
		}
		if err := l.AddFakeNodes(ctx, 0, cniPeers); err != nil {
			return err
		}
		if err := waitRoutes(ctx, n, 0, cniPeers, 2*time.Minute); err != nil {
			return err
		}
		return round(cniPeers)
	})
	if err != nil {
		return err
	}
	for _, peers := range []int{0, cniPeers} {
		var ref, wl benchreport.CNIRun
		for _, r := range res.Runs {
			if r.Peers == peers && r.Plugin == "wirelace" {
				wl = r
			} else if r.Peers == peers {
				ref = r
			}
		}
		fmt.Printf("  %d peers: wirelace / ptp + host-local: p50 %.2f, p99 %.2f\n", peers, wl.P50Ms/ref.P50Ms, wl.P99Ms/ref.P99Ms)
	}
	return writeBenchJSON(root, benchreport.CNIAddFile, res)
}

// addPods adds cniPods pods named prefix-i with conflist, cniConcurrency
// at a time, and returns each ADD's time in ms.
func addPods(ctx context.Context, n *lab.Node, prefix string, conflist []byte) ([]float64, error) {
	pods := make([]*lab.Pod, cniPods)
	for i := range pods {
		p, err := n.NewPod(ctx, fmt.Sprintf("%s%d", prefix, i))
		if err != nil {
			return nil, err
		}
		pods[i] = p
	}
	out := make([]float64, cniPods)
	var g errgroup.Group
	g.SetLimit(cniConcurrency)
	for i, p := range pods {
		g.Go(func() error {
			d, err := p.AddTimed(ctx, conflist)
			out[i] = ms(d)
			return err
		})
	}
	return out, g.Wait()
}

// ptpConfList is the reference: ptp with host-local on a range of its own.
func ptpConfList(n *lab.Node) []byte {
	b, _ := json.Marshal(map[string]any{
		"cniVersion": "1.1.0",
		"name":       "ptp-bench",
		"plugins": []any{map[string]any{
			"type":   "ptp",
			"ipMasq": false,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  []any{[]any{map[string]any{"subnet": "10.98.0.0/24"}}},
				"dataDir": filepath.Join(n.Dir, "cni", "host-local-bench"),
			},
		}},
	})
	return b
}
