package benchreport

import (
	"fmt"
	"strings"
)

// ScaleDataPlane is the data plane at one size of the scale part: lace0
// of the daemon under test with one peer per fake node, plus one real node
// the throughput goes to.
type ScaleDataPlane struct {
	// Peers is how many peers lace0 had (`wg show lace0 peers`).
	Peers int `json:"peers"`
	// The daemon's Go heap after the quiet window: in use (swings with
	// the GC cycle) and live (marked by the last GC).
	HeapInuseMiB float64 `json:"heap_inuse_mib"`
	HeapLiveMiB  float64 `json:"heap_live_mib"`
	// Change is one fake node's WireGuard key changed in its MeshNode.
	Change PeerChange `json:"peer_change"`
	// Throughput is one TCP stream to the real node through lace0. It is
	// measured after every memory figure (a transfer grows the daemons'
	// memory): at the largest size, at each smaller one with the fake
	// nodes' MeshNodes deleted down to it, and at the largest again, whose
	// rounds are both passes'.
	Throughput *PathThroughput `json:"throughput,omitempty"`
}

// PeerChange is what a one-peer change costs the daemon.
type PeerChange struct {
	Trials int `json:"trials"`
	// From the update sent to the new key on lace0 and the old one gone.
	VisibleP50Ms float64 `json:"visible_p50_ms"`
	VisibleMaxMs float64 `json:"visible_max_ms"`
	// The daemon's CPU over a fixed window around one change, and what
	// the same window costs it idle (its quiet-window rate).
	CPUMs     float64 `json:"cpu_ms"`
	IdleCPUMs float64 `json:"idle_cpu_ms"`
	// PeerWrites is peers written to the device per change (its counter
	// wirelace_wireguard_peer_writes_total): a new key is two, the old
	// peer removed and the new one added.
	PeerWrites float64 `json:"peer_writes"`
}

// NetCPUMs is the change's own CPU: the window less its idle cost.
func (c PeerChange) NetCPUMs() float64 { return c.CPUMs - c.IdleCPUMs }

// PerPeer is what one more peer costs, between the smallest and the
// largest size that measured the data plane.
type PerPeer struct {
	FromPeers, ToPeers                int
	RSSKiB, HeapInuseKiB, HeapLiveKiB float64
	// ThroughputRatio is the largest size's throughput over the smallest's
	// (0 when either was not measured).
	ThroughputRatio float64
}

// perPeer compares the smallest and the largest size; ok is false when
// fewer than two sizes have data plane figures.
func perPeer(sc []Scale) (pp PerPeer, ok bool) {
	var first, last *Scale
	for i := range sc {
		s := &sc[i]
		if s.DataPlane == nil {
			continue
		}
		if first == nil || s.DataPlane.Peers < first.DataPlane.Peers {
			first = s
		}
		if last == nil || s.DataPlane.Peers > last.DataPlane.Peers {
			last = s
		}
	}
	if first == nil || first == last {
		return pp, false
	}
	f, l := first.DataPlane, last.DataPlane
	n := float64(l.Peers - f.Peers)
	pp = PerPeer{
		FromPeers:    f.Peers,
		ToPeers:      l.Peers,
		RSSKiB:       1024 * (last.RSSMiB - first.RSSMiB) / n,
		HeapInuseKiB: 1024 * (l.HeapInuseMiB - f.HeapInuseMiB) / n,
		HeapLiveKiB:  1024 * (l.HeapLiveMiB - f.HeapLiveMiB) / n,
	}
	if f.Throughput != nil && l.Throughput != nil && f.Throughput.Gbps > 0 {
		pp.ThroughputRatio = l.Throughput.Gbps / f.Throughput.Gbps
	}
	return pp, true
}

// dataPlaneMarkdown is the scale section's data plane table and its
// per-peer summary; empty when no size measured the data plane.
func dataPlaneMarkdown(sc []Scale) string {
	var md strings.Builder
	for _, s := range sc {
		d := s.DataPlane
		if d == nil {
			continue
		}
		if md.Len() == 0 {
			md.WriteString("\nThe data plane: lace0 with one WireGuard peer per node (all idle but one real node). A one-peer change is one node's WireGuard key changed in its MeshNode; CPU is the daemon's over a fixed window less its idle rate. Throughput is one TCP stream to the real node, measured last: from the largest size down, MeshNodes deleted, then the largest again (its rounds are both passes', so a steady drift of the machine's load cancels out).\n\n| nodes | peers | change visible p50 | max | daemon CPU per change | peers written per change | heap in use | live heap | Gbit/s | CPU s/Gbit |\n|---|---|---|---|---|---|---|---|---|---|\n")
		}
		gbps, cpu := "-", "-"
		if d.Throughput != nil {
			gbps = fmt.Sprintf("%.2f (%s)", d.Throughput.Gbps, floats(d.Throughput.RoundsGbps, "%.2f"))
			cpu = fmt.Sprintf("%.2f", d.Throughput.CPUPerGbit)
		}
		fmt.Fprintf(&md, "| %d | %d | %.0f ms | %.0f ms | %.0f ms | %.1f | %.1f MiB | %.1f MiB | %s | %s |\n",
			s.Nodes, d.Peers, d.Change.VisibleP50Ms, d.Change.VisibleMaxMs, d.Change.NetCPUMs(), d.Change.PeerWrites,
			d.HeapInuseMiB, d.HeapLiveMiB, gbps, cpu)
	}
	if pp, ok := perPeer(sc); ok {
		fmt.Fprintf(&md, "\nPer peer, from %d to %d peers: RSS %.1f KiB, heap in use %.1f KiB, live heap %.1f KiB.",
			pp.FromPeers, pp.ToPeers, pp.RSSKiB, pp.HeapInuseKiB, pp.HeapLiveKiB)
		if pp.ThroughputRatio > 0 {
			fmt.Fprintf(&md, " Throughput with %d peers is %.2f× that with %d.", pp.ToPeers, pp.ThroughputRatio, pp.FromPeers)
		}
		md.WriteString("\n")
	}
	return md.String()
}
