package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wirelace/wirelace/daemon/path"
	"github.com/wirelace/wirelace/e2e/benchreport"
	"github.com/wirelace/wirelace/e2e/lab"
)

// The control plane at scale: one real daemon watches nodes that exist only
// as API objects (Node, IPClaim, MeshNode, as a kubelet and wirelaced would
// make them; lab.AddFakeNode) in the lab's real kube-apiserver, at 10, 100
// and 1000 nodes. For each size it reports how long one more node takes,
// from its MeshNode's creation to its route (and so its WireGuard peer,
// configured before routes) on the real node; how long the node takes in a
// burst of new nodes (created several at a time); and, over a quiet window, the daemon's CPU, its RSS
// and the requests it sends the API server (its own counter,
// wirelace_api_requests_total). Alongside, the data plane: lace0 with a
// peer per node, one of them real (benchdataplane.go).
const (
	scaleSamples = 10               // single joins timed per size
	scaleQuiet   = 30 * time.Second // the quiet window
)

var scaleSizes = []int{10, 100, 1000}

// scaleSizesFrom reads WIRELACE_LAB_SCALE_SIZES ("1000" or "100,1000"):
// measuring only some sizes, to iterate on one quickly. Sizes must be
// ascending and above scaleSamples. ok is false when it is unset.
func scaleSizesFrom(env string) (sizes []int, ok bool, err error) {
	if env == "" {
		return scaleSizes, false, nil
	}
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= scaleSamples || len(sizes) > 0 && n <= sizes[len(sizes)-1] {
			return nil, true, fmt.Errorf("WIRELACE_LAB_SCALE_SIZES=%q: want ascending sizes above %d", env, scaleSamples)
		}
		sizes = append(sizes, n)
	}
	return sizes, true, nil
}

func benchScale(ctx context.Context, root string) error {
	sizes, partial, err := scaleSizesFrom(os.Getenv("WIRELACE_LAB_SCALE_SIZES"))
	if err != nil {
		return err
	}
	say("Scale: one real daemon watching %v nodes in the API server", sizes)
	var results []benchreport.Scale
	err = withLab(ctx, lab.Options{Root: root}, false, func(l *lab.Lab) error {
		a, err := l.AddNode(ctx, "a")
		if err != nil {
			return err
		}
		// WIRELACE_LAB_PROFILE=<dir> also records a CPU profile of the
		// daemon over each size's key changes (<dir>/change-<size>.pprof):
		// where a one-peer change's CPU goes. Off by default, as sampling
		// costs a little CPU itself.
		profileDir := os.Getenv("WIRELACE_LAB_PROFILE")
		var extra []string
		if profileDir != "" {
			extra = append(extra, "--profiling")
		}
		if err := a.Start(extra...); err != nil {
			return err
		}
		if err := a.WaitReady(ctx, 60*time.Second); err != nil {
			return err
		}
		dp, err := newDataPlane(ctx, l, a)
		if err != nil {
			return fmt.Errorf("data plane: %w", err)
		}
		created := 0
		for _, size := range sizes {
			r := benchreport.Scale{Nodes: size}
			// The burst: up to size - scaleSamples nodes.
			burstTo := size - scaleSamples
			r.BurstNodes = burstTo - created
			if r.BurstNodes > 0 {
				if err := l.AddFakeNodes(ctx, created, burstTo); err != nil {
					return err
				}
				t0 := time.Now()
				if err := waitRoutes(ctx, a, created, burstTo, 2*time.Minute); err != nil {
					return err
				}
				r.BurstMs = ms(time.Since(t0))
				created = burstTo
			}
			// One at a time.
			var joins []time.Duration
			var lastJoin time.Time
			for range scaleSamples {
				t0 := time.Now()
				if err := l.AddFakeNode(ctx, created); err != nil {
					return err
				}
				if err := waitRoutes(ctx, a, created, created+1, time.Minute); err != nil {
					return err
				}
				joins = append(joins, time.Since(t0))
				lastJoin = time.Now()
				created++
			}
			slices.Sort(joins)
			r.JoinP50Ms, r.JoinMaxMs = ms(joins[len(joins)/2]), ms(joins[len(joins)-1])
			// A new peer counts as active for path.IdleTimeout (its direct
			// path is looked for at once); idle is after that.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(path.IdleTimeout - time.Since(lastJoin)):
			}
			if err := quietWindow(ctx, a, &r); err != nil {
				return err
			}
			fmt.Printf("  %4d nodes: join p50 %6.0f ms, max %6.0f ms; burst of %3d applied %6.0f ms after the last create; idle %.2f%% of a core, RSS %.0f MiB, API %.1f writes/min, %.1f reads/min %v\n",
				r.Nodes, r.JoinP50Ms, r.JoinMaxMs, r.BurstNodes, r.BurstMs, r.CPUPercent, r.RSSMiB, r.WritesPerMin, r.ReadsPerMin, r.RequestsByKind)
			// After the quiet window, which it would disturb.
			var profiled chan error
			if profileDir != "" {
				profiled = make(chan error, 1)
				file := filepath.Join(profileDir, fmt.Sprintf("change-%d.pprof", size))
				go func() { profiled <- cpuProfile(ctx, a, file, profileSpan) }()
			}
			if r.DataPlane, err = dp.measure(ctx, r.CPUPercent); err != nil {
				return fmt.Errorf("data plane at %d nodes: %w", size, err)
			}
			if profiled != nil {
				if err := <-profiled; err != nil {
					say("no CPU profile at %d nodes: %v", size, err)
				}
			}
			c := r.DataPlane.Change
			fmt.Printf("  %4d nodes, %4d peers on lace0: heap in use %.1f MiB, live %.1f MiB; one key changed: on lace0 p50 %.0f ms, max %.0f ms, daemon CPU %.0f ms (idle %.0f ms in the window), %.1f peers written\n",
				r.Nodes, r.DataPlane.Peers, r.DataPlane.HeapInuseMiB, r.DataPlane.HeapLiveMiB, c.VisibleP50Ms, c.VisibleMaxMs, c.CPUMs, c.IdleCPUMs, c.PeerWrites)
			results = append(results, r)
		}
		if partial {
			// Some sizes only: a quick look at the control plane, not a
			// report (no throughputs, no JSON that would stand for one).
			return nil
		}
		say("Scale, data plane: TCP a→b through lace0, %d rounds of %s per size, from the largest down (MeshNodes deleted) and the largest again", benchRounds, benchDuration)
		return dp.throughputs(ctx, results, created)
	})
	if err != nil || partial {
		return err
	}
	return writeBenchJSON(root, benchreport.ScaleFile, results)
}

// profileSpan is how long cpuProfile samples: the key changes' metered
// part (changeTrials windows of changeWindow) comes after the timed part,
// which polls `wg show` and so shows in the profile too.
const profileSpan = 2 * changeTrials * changeWindow

// cpuProfile fetches a CPU profile of n's daemon over span (it serves
// /debug/pprof with --profiling) and writes it to file.
func cpuProfile(ctx context.Context, n *lab.Node, file string, span time.Duration) error {
	b, err := n.Debug(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(span.Seconds())), span+30*time.Second)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// waitRoutes waits until n routes the pod CIDR of every fake node in
// [from, to).
func waitRoutes(ctx context.Context, n *lab.Node, from, to int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := n.Exec(ctx, "ip", "-4", "route", "show", "proto", "119")
		if err == nil {
			have := map[string]bool{}
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) > 0 {
					have[f[0]] = true
				}
			}
			missing := 0
			for i := from; i < to; i++ {
				if _, pods := lab.FakeAddrs(i); !have[pods.String()] {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d fake nodes not routed on %s after %s", missing, to-from, n.Name, timeout)
			}
		} else if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// quietWindow measures the daemon over scaleQuiet with nothing changing:
// its CPU time, its RSS at the end, and its API requests.
func quietWindow(ctx context.Context, n *lab.Node, r *benchreport.Scale) error {
	pid := n.PID()
	before, err := n.Metrics(ctx)
	if err != nil {
		return err
	}
	cpu0 := cpuSeconds([]int{pid})
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(scaleQuiet):
	}
	cpu1 := cpuSeconds([]int{pid})
	after, err := n.Metrics(ctx)
	if err != nil {
		return err
	}
	r.CPUPercent = 100 * (cpu1 - cpu0) / scaleQuiet.Seconds()
	if r.RSSMiB, err = procStatusMiB(pid, "VmRSS"); err != nil {
		return err
	}
	perMin := time.Minute.Seconds() / scaleQuiet.Seconds()
	r.RequestsByKind = map[string]float64{}
	b, err := apiRequests(before)
	if err != nil {
		return err
	}
	a, err := apiRequests(after)
	if err != nil {
		return err
	}
	for k, v := range a {
		d := (v - b[k]) * perMin
		if d == 0 || strings.HasPrefix(k, "watch ") {
			continue // watches are long-lived, not requests per minute
		}
		r.RequestsByKind[k] = d
		switch strings.Fields(k)[0] {
		case "get", "list":
			r.ReadsPerMin += d
		default:
			r.WritesPerMin += d
		}
	}
	return nil
}

// apiRequests reads wirelace_api_requests_total as "verb resource" ->
// count.
func apiRequests(metrics string) (map[string]float64, error) {
	byLabels, err := lab.MetricValues(metrics, "wirelace_api_requests_total")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for k, v := range byLabels {
		resource, verb, _ := strings.Cut(k, " ") // labels in name order
		out[verb+" "+resource] = v
	}
	return out, nil
}
