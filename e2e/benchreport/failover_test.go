package benchreport

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The failover section and its timeline come from failover.json alone.
func TestWriteFailover(t *testing.T) {
	f := Failover{
		Steady: Steady{WindowS: 600, TrafficPPS: 1, Peers: []SteadyPeer{
			{Node: "cone", Peer: "pub", Path: "direct", ProbesPerS: 0.29},
			{Node: "cone", Peer: "sym", Path: "relay", PathChanges: 2, ProbesPerS: 0.05},
		}, Nodes: []SteadyNode{{Node: "cone", Peers: 2, PingsSent: 204}},
			Events: []PathEvent{{T: 42.5, Node: "cone", Peer: "sym", From: "relay", To: "direct", Reason: "direct: pong from 198.18.0.13:40000 in 2ms"}}},
		Cut: FailoverCut{
			From: "cone", To: "pub", IntervalMs: 50, RestoreS: 9.5,
			LargestGapMs: 412, LostCut: 7, ResumedMs: 380, RelayAloneMs: 3450,
			FailbackMs: 1180, FailbackGapMs: 55, LostFailback: 0,
			Pings: []PingSample{{T: -0.05, RTTMs: 0.4}, {T: 0, Lost: true}, {T: 0.4, RTTMs: 1.3}, {T: 9.6, RTTMs: 0.5}},
			Events: []PathEvent{
				{T: 0.35, Node: "cone", Peer: "pub", From: "direct", To: "direct+relay"},
				{T: 3.45, Node: "cone", Peer: "pub", From: "direct+relay", To: "relay"},
				{T: 10.68, Node: "cone", Peer: "pub", From: "relay", To: "direct"},
				{T: 0.5, Node: "pub", Peer: "cone", From: "direct", To: "direct+relay"},
			},
		},
	}
	md, out := renderOnly(t, FailoverFile, f)
	for _, want := range []string{
		"## Failover and steady state",
		"over 10 min",
		"| cone | sym | relay | 2 | 0.05 |",
		"cone 204 pings to 2 peers",
		"- 42.5 s: cone sees sym relay → direct (direct: pong from 198.18.0.13:40000 in 2ms)",
		"| largest gap across the cut | 412 ms (7 lost) | < 500 ms |",
		"| failback: both sides direct | 1180 ms after the restore | < 2000 ms |",
		"3.5 s after the cut",
		"![failover timeline](failover.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	svg, err := os.ReadFile(filepath.Join(out, "failover.svg"))
	if err != nil || !strings.Contains(string(svg), "<svg") {
		t.Fatalf("failover.svg: %v (%d bytes)", err, len(svg))
	}
	for _, want := range []string{"cut", "restore", "lost", "cone → relay"} {
		if !strings.Contains(string(svg), want) {
			t.Errorf("failover.svg has no %q in its legend", want)
		}
	}
}

// renderOnly writes v as the only part's JSON, renders the report, and
// returns report.md and the output directory.
func renderOnly(t *testing.T, name string, v any) (string, string) {
	t.Helper()
	dir, out := t.TempDir(), t.TempDir()
	b, err := json.Marshal(v)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	if err == nil {
		err = Write(dir, out)
	}
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(md), out
}
