package benchreport

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// The targets make bench measures against: the performance issue's, or,
// where it names none in numbers, the bound the report holds it to.
const (
	targetDirectVsStock     = 0.95    // direct throughput, × stock wireguard-go
	targetDirectCPUVsStock  = 1.1     // direct CPU per Gbit, × stock's
	targetRelayVsDirect     = 0.7     // relayed throughput, × direct
	targetRetransmitPct     = 1.0     // relayed retransmits, % of segments
	targetMemAfterMiB       = 80      // RSS right after a transfer
	targetMemBackMiB        = 16      // above rest, after the idle minute
	targetGapMs             = 500     // largest ping gap when a direct path is cut
	targetFailbackMs        = 2000    // both sides direct after the path returns
	targetProbesPerS        = 1.0 / 3 // probe pings per peer in a steady state
	targetFirstPacketMs     = 1000    // first ping of a new relay-only pair
	targetJoinMs            = 1000    // a new node reachable from all nodes
	targetCNIVsReference    = 1.2     // CNI ADD p50 and p99, × ptp + host-local
	targetIdleCPUPercent    = 1.0     // of a core, at the largest size
	targetRSSLargeMiB       = 150     // at 1000 peers
	targetRSSSmallMiB       = 50      // at the smallest size
	targetLeaseWritesPerMin = 6       // the Lease, renewed every 10 s: nothing else
	targetReconcileMs       = 1000    // a burst of nodes, after the last create
	targetPeerWrites        = 2       // per one-peer change: old key out, new in
	targetThroughputAtScale = 0.9     // one peer's throughput, largest / smallest
)

// Target is one goal and what the run measured against it.
type Target struct {
	Name, Goal, Measured string
	Met                  bool
}

// results is everything one make bench wrote; a part that did not run is
// nil.
type results struct {
	throughput  *Throughput
	memory      *Memory
	firstPacket *FirstPacket
	join        *Join
	cni         *CNIAdd
	scale       []Scale
	failover    *Failover
}

// load reads every part make bench wrote in dir.
func load(dir string) (r results, err error) {
	if r.throughput, err = readPart[Throughput](dir, ThroughputFile); err != nil {
		return r, err
	}
	if r.memory, err = readPart[Memory](dir, MemoryFile); err != nil {
		return r, err
	}
	if r.firstPacket, err = readPart[FirstPacket](dir, FirstPacketFile); err != nil {
		return r, err
	}
	if r.join, err = readPart[Join](dir, JoinFile); err != nil {
		return r, err
	}
	if r.cni, err = readPart[CNIAdd](dir, CNIAddFile); err != nil {
		return r, err
	}
	if r.failover, err = readPart[Failover](dir, FailoverFile); err != nil {
		return r, err
	}
	sc, err := readPart[[]Scale](dir, ScaleFile)
	if sc != nil {
		r.scale = *sc
	}
	return r, err
}

// readPart decodes one part (see read); nil when it did not run.
func readPart[T any](dir, name string) (*T, error) {
	v := new(T)
	ok, err := read(dir, name, v)
	if err != nil || !ok {
		return nil, err
	}
	return v, nil
}

// targets holds each goal against what r measured, for the parts that ran.
func targets(r results) []Target {
	var out []Target
	add := func(name, goal, measured string, met bool) {
		out = append(out, Target{Name: name, Goal: goal, Measured: measured, Met: met})
	}
	if tp := r.throughput; tp != nil {
		direct, stock, relay := tp.path("wirelace direct"), tp.path("stock wireguard-go"), tp.path("wirelace via relay")
		if direct != nil && stock != nil && stock.Gbps > 0 && stock.CPUPerGbit > 0 {
			x := round2(direct.Gbps / stock.Gbps)
			add("direct path throughput, vs stock wireguard-go", fmt.Sprintf("≥ %.2f×", targetDirectVsStock), fmt.Sprintf("%.2f×", x), x >= targetDirectVsStock)
			c := round2(direct.CPUPerGbit / stock.CPUPerGbit)
			add("direct path CPU per Gbit, vs stock", fmt.Sprintf("≤ %.1f×", targetDirectCPUVsStock), fmt.Sprintf("%.2f×", c), c <= targetDirectCPUVsStock)
		}
		if direct != nil && relay != nil && direct.Gbps > 0 {
			x := round2(relay.Gbps / direct.Gbps)
			add("relayed throughput, vs direct", fmt.Sprintf("≥ %.1f×", targetRelayVsDirect), fmt.Sprintf("%.2f×", x), x >= targetRelayVsDirect)
			add("relayed retransmits", fmt.Sprintf("< %.0f%% of segments", targetRetransmitPct), fmt.Sprintf("%.2f%%", relay.RetransmitPct), relay.RetransmitPct < targetRetransmitPct)
		}
	}
	if m := r.memory; m != nil {
		var after, back []string
		afterMet, backMet := true, true
		for _, p := range m.Processes {
			if !strings.HasPrefix(p.Name, "wirelace") {
				continue
			}
			after = append(after, fmt.Sprintf("%.0f", p.AfterMiB))
			back = append(back, fmt.Sprintf("+%.0f", p.IdleMiB-p.BeforeMiB))
			afterMet = afterMet && p.AfterMiB < targetMemAfterMiB
			backMet = backMet && p.IdleMiB-p.BeforeMiB <= targetMemBackMiB
		}
		if len(after) > 0 {
			add("daemon RSS right after a transfer (sender, receiver)", fmt.Sprintf("< %d MiB", targetMemAfterMiB), strings.Join(after, ", ")+" MiB", afterMet)
			add(fmt.Sprintf("daemon RSS %.0f s later, above rest", m.IdleSeconds), fmt.Sprintf("≤ %d MiB", targetMemBackMiB), strings.Join(back, ", ")+" MiB", backMet)
		}
	}
	if f := r.failover; f != nil {
		changes, worst := 0, 0.0
		for _, p := range f.Steady.Peers {
			changes += p.PathChanges
			worst = max(worst, p.ProbesPerS)
		}
		add(fmt.Sprintf("steady state over %s: path changes", duration(f.Steady.WindowS)), "none", fmt.Sprint(changes), changes == 0)
		// "About one probe per peer every 3 s": within half again.
		add("steady state: probe pings per peer (most of any)", fmt.Sprintf("about %.2f/s", targetProbesPerS), fmt.Sprintf("%.2f/s", worst), worst <= 1.5*targetProbesPerS)
		add("largest ping gap when a direct path is cut (20/s)", fmt.Sprintf("< %d ms", targetGapMs), fmt.Sprintf("%.0f ms", f.Cut.LargestGapMs), f.Cut.LargestGapMs < targetGapMs)
		add("failback: both sides direct after the path returns", fmt.Sprintf("< %d ms", targetFailbackMs), fmt.Sprintf("%.0f ms", f.Cut.FailbackMs), f.Cut.FailbackMs > 0 && f.Cut.FailbackMs < targetFailbackMs)
	}
	if fp := r.firstPacket; fp != nil {
		add(fmt.Sprintf("first ping of a new relay-only pair (max of %d)", fp.Trials), fmt.Sprintf("< %d ms", targetFirstPacketMs), fmt.Sprintf("%.0f ms", fp.MaxMs), fp.MaxMs < targetFirstPacketMs)
	}
	if j := r.join; j != nil {
		add(fmt.Sprintf("a new node reachable from all nodes (max of %d)", len(j.Trials)), fmt.Sprintf("< %d ms", targetJoinMs), fmt.Sprintf("%.0f ms", j.MaxMs), j.MaxMs < targetJoinMs)
	}
	if c := r.cni; c != nil {
		for _, peers := range c.peerCounts() {
			ref, wl := c.run("ptp + host-local", peers), c.run("wirelace", peers)
			if ref == nil || wl == nil || ref.P50Ms == 0 || ref.P99Ms == 0 {
				continue
			}
			p50, p99 := round2(wl.P50Ms/ref.P50Ms), round2(wl.P99Ms/ref.P99Ms)
			add(fmt.Sprintf("CNI ADD p50, p99 with %d peers, vs ptp + host-local", peers), fmt.Sprintf("≤ %.1f×", targetCNIVsReference),
				fmt.Sprintf("%.2f×, %.2f×", p50, p99), p50 <= targetCNIVsReference && p99 <= targetCNIVsReference)
		}
	}
	if len(r.scale) > 0 {
		small, large := r.scale[0], r.scale[len(r.scale)-1]
		add(fmt.Sprintf("idle CPU at %d nodes", large.Nodes), fmt.Sprintf("< %.0f%% of a core", targetIdleCPUPercent), fmt.Sprintf("%.2f%%", large.CPUPercent), large.CPUPercent < targetIdleCPUPercent)
		add(fmt.Sprintf("daemon RSS at %d nodes", large.Nodes), fmt.Sprintf("< %d MiB", targetRSSLargeMiB), fmt.Sprintf("%.0f MiB", large.RSSMiB), large.RSSMiB < targetRSSLargeMiB)
		add(fmt.Sprintf("daemon RSS at %d nodes", small.Nodes), fmt.Sprintf("< %d MiB", targetRSSSmallMiB), fmt.Sprintf("%.0f MiB", small.RSSMiB), small.RSSMiB < targetRSSSmallMiB)
		var writes []string
		writesMet := true
		for _, s := range r.scale {
			writes = append(writes, fmt.Sprintf("%.1f", s.WritesPerMin))
			writesMet = writesMet && s.WritesPerMin <= targetLeaseWritesPerMin
		}
		add("API writes per minute, quiet (each size)", fmt.Sprintf("the Lease only, %d", targetLeaseWritesPerMin), strings.Join(writes, ", "), writesMet)
		if large.BurstNodes > 0 {
			add(fmt.Sprintf("%d nodes joining at once, applied after the last create", large.BurstNodes), fmt.Sprintf("< %d ms", targetReconcileMs), fmt.Sprintf("%.0f ms", large.BurstMs), large.BurstMs < targetReconcileMs)
		}
		if d := large.DataPlane; d != nil {
			add(fmt.Sprintf("peers written per one-peer change, %d peers", d.Peers), fmt.Sprintf("%d (not all)", targetPeerWrites), fmt.Sprintf("%.1f", d.Change.PeerWrites), d.Change.PeerWrites <= targetPeerWrites)
		}
		if pp, ok := perPeer(r.scale); ok && pp.ThroughputRatio > 0 {
			x := round2(pp.ThroughputRatio)
			add(fmt.Sprintf("throughput to one peer, %d peers vs %d", pp.ToPeers, pp.FromPeers), fmt.Sprintf("≥ %.1f× (unchanged)", targetThroughputAtScale), fmt.Sprintf("%.2f×", x), x >= targetThroughputAtScale)
		}
	}
	return out
}

// round2 rounds a ratio to the two decimals the report shows, so that a
// figure is judged as it reads: machine noise is far larger than 0.005.
func round2(x float64) float64 { return math.Round(x*100) / 100 }

// targetsMarkdown is the report's first table: every goal, met or not.
func targetsMarkdown(ts []Target) string {
	if len(ts) == 0 {
		return ""
	}
	var md strings.Builder
	met := 0
	for _, t := range ts {
		if t.Met {
			met++
		}
	}
	fmt.Fprintf(&md, "\n## Against the targets\n\n%d of %d met in this run; the sections below have the detail, and the README what limits those missed.\n\n| | goal | measured | |\n|---|---|---|---|\n", met, len(ts))
	for _, t := range ts {
		mark := "met"
		if !t.Met {
			mark = "**missed**"
		}
		fmt.Fprintf(&md, "| %s | %s | %s | %s |\n", t.Name, t.Goal, t.Measured, mark)
	}
	return md.String()
}

// path returns the named path, or nil.
func (t *Throughput) path(name string) *PathThroughput {
	for i := range t.Paths {
		if t.Paths[i].Name == name {
			return &t.Paths[i]
		}
	}
	return nil
}

// peerCounts are the numbers of peers the runs measured, ascending.
func (c *CNIAdd) peerCounts() []int {
	var out []int
	for _, r := range c.Runs {
		if !slices.Contains(out, r.Peers) {
			out = append(out, r.Peers)
		}
	}
	slices.Sort(out)
	return out
}

// run returns plugin's run at peers, or nil.
func (c *CNIAdd) run(plugin string, peers int) *CNIRun {
	for i := range c.Runs {
		if c.Runs[i].Plugin == plugin && c.Runs[i].Peers == peers {
			return &c.Runs[i]
		}
	}
	return nil
}
