package benchreport

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// scaleJSON is a scale.json as the scale bench writes it, with the data
// plane measured at two of its three sizes (the middle one predates it).
const scaleJSON = `[
 {"nodes": 10, "rss_mib": 40, "data_plane": {"peers": 11, "heap_inuse_mib": 8, "heap_live_mib": 5,
  "peer_change": {"trials": 5, "visible_p50_ms": 30, "visible_max_ms": 45, "cpu_ms": 25, "idle_cpu_ms": 5, "peer_writes": 2},
  "throughput": {"name": "a to b", "gbps": 3.0, "rounds_gbps": [2.9, 3.1], "cpu_s_per_gbit": 0.8}}},
 {"nodes": 100, "rss_mib": 60},
 {"nodes": 1000, "rss_mib": 150, "data_plane": {"peers": 1001, "heap_inuse_mib": 60, "heap_live_mib": 35,
  "peer_change": {"trials": 5, "visible_p50_ms": 200, "visible_max_ms": 260, "cpu_ms": 140, "idle_cpu_ms": 20, "peer_writes": 2},
  "throughput": {"name": "a to b", "gbps": 2.7, "rounds_gbps": [2.6, 2.8], "cpu_s_per_gbit": 0.9}}}
]`

func TestDataPlaneReport(t *testing.T) {
	var sc []Scale
	if err := json.Unmarshal([]byte(scaleJSON), &sc); err != nil {
		t.Fatal(err)
	}
	dir, out := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ScaleFile), []byte(scaleJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	small, large := sc[0], sc[2]
	for _, s := range []Scale{small, large} {
		d := s.DataPlane
		row := fmt.Sprintf("| %d | %d | %.0f ms | %.0f ms | %.0f ms | %.1f |", s.Nodes, d.Peers,
			d.Change.VisibleP50Ms, d.Change.VisibleMaxMs, d.Change.CPUMs-d.Change.IdleCPUMs, d.Change.PeerWrites)
		if !strings.Contains(md, row) {
			t.Errorf("report lacks the row %q:\n%s", row, md)
		}
	}
	if strings.Contains(md, fmt.Sprintf("| %d | %d |", sc[1].Nodes, 0)) {
		t.Errorf("a size without data plane figures got a row:\n%s", md)
	}
	peers := float64(large.DataPlane.Peers - small.DataPlane.Peers)
	summary := fmt.Sprintf("from %d to %d peers: RSS %.1f KiB, heap in use %.1f KiB, live heap %.1f KiB. Throughput with %d peers is %.2f× that with %d.",
		small.DataPlane.Peers, large.DataPlane.Peers,
		1024*(large.RSSMiB-small.RSSMiB)/peers,
		1024*(large.DataPlane.HeapInuseMiB-small.DataPlane.HeapInuseMiB)/peers,
		1024*(large.DataPlane.HeapLiveMiB-small.DataPlane.HeapLiveMiB)/peers,
		large.DataPlane.Peers, large.DataPlane.Throughput.Gbps/small.DataPlane.Throughput.Gbps, small.DataPlane.Peers)
	if !strings.Contains(md, summary) {
		t.Errorf("report lacks the per-peer summary %q:\n%s", summary, md)
	}
}

// A scale.json from before the data plane figures renders as before.
func TestDataPlaneReportAbsent(t *testing.T) {
	sc := []Scale{{Nodes: 10, RSSMiB: 40}, {Nodes: 1000, RSSMiB: 150}}
	if md := dataPlaneMarkdown(sc); md != "" {
		t.Errorf("no data plane figures, yet:\n%s", md)
	}
	// One size alone has nothing to compare with: its row, no summary.
	sc[1].DataPlane = &ScaleDataPlane{Peers: 1001}
	md := dataPlaneMarkdown(sc)
	if !strings.Contains(md, "| 1000 | 1001 |") || strings.Contains(md, "Per peer") {
		t.Errorf("one size measured:\n%s", md)
	}
}

// Throughput missing at either end leaves the ratio out.
func TestPerPeerWithoutThroughput(t *testing.T) {
	sc := []Scale{
		{Nodes: 10, DataPlane: &ScaleDataPlane{Peers: 11, Throughput: &PathThroughput{Gbps: 3}}},
		{Nodes: 1000, DataPlane: &ScaleDataPlane{Peers: 1001}},
	}
	pp, ok := perPeer(sc)
	if !ok || pp.ThroughputRatio != 0 || pp.FromPeers != 11 || pp.ToPeers != 1001 {
		t.Errorf("perPeer = %+v, %v", pp, ok)
	}
}
