package benchreport

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReport(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	write := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(ThroughputFile, Throughput{Rounds: 2, Paths: []PathThroughput{
		{Name: "wirelace direct", Gbps: 3.1, RoundsGbps: []float64{3.0, 3.2}, CPUPerGbit: 0.8},
		{Name: "wirelace via relay", Gbps: 2.4, RoundsGbps: []float64{2.3, 2.5}, CPUPerGbit: 1.1, RetransmitPct: 0.25},
	}})
	write(FirstPacketFile, FirstPacket{Trials: 3, Ms: []float64{210, 5100, 230}, P50Ms: 230, MaxMs: 5100})
	write(JoinFile, Join{P50Ms: 310, MaxMs: 640, Trials: []JoinTrial{
		{Node: "j0symmetric", Kind: "symmetric", Ms: 640, From: []JoinFrom{{Node: "pub", Ms: 420}, {Node: "sym", Ms: 640}}},
	}})
	write(ScaleFile, []Scale{{Nodes: 10, JoinP50Ms: 65, JoinMaxMs: 75, RSSMiB: 47}, {Nodes: 1000, JoinP50Ms: 580, JoinMaxMs: 880, BurstNodes: 890, BurstMs: 665, RSSMiB: 183}})

	if err := Write(dir, out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| wirelace via relay | 2.40 | 2.30, 2.50 | 1.10 | 0.25% |",
		"p50 230 ms, max 5100 ms",
		"| 1000 | 580 ms | 880 ms | 665 ms (890 nodes) |",
		"p50 310 ms, max 640 ms",
		"| j0symmetric | symmetric | 640 ms | pub 420 ms, sym 640 ms |",
		"![throughput](throughput.svg)",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	for _, f := range []string{"throughput.svg", "first-packet.svg", "scale-join.svg", "scale-rss.svg"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil || !strings.Contains(string(b), "<svg") {
			t.Errorf("%s: %v (%d bytes)", f, err, len(b))
		}
	}
}

// A part that did not run leaves its section out rather than failing.
func TestWriteReportWithoutParts(t *testing.T) {
	out := t.TempDir()
	if err := Write(t.TempDir(), out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil || strings.Contains(string(md), "##") {
		t.Fatalf("%v:\n%s", err, md)
	}
}
