package benchreport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Write reads what make bench wrote in dir (any of its parts may be
// missing) and writes report.md and its pictures into out.
func Write(dir, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	r, err := load(dir)
	if err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# Benchmarks\n\nWritten by `make bench` on %s. Each figure is measured side by side in one run on one machine (2 cores, shared); ratios are what to compare, not absolute numbers.\n", time.Now().UTC().Format("2006-01-02"))
	md.WriteString(targetsMarkdown(targets(r)))

	if tp := r.throughput; tp != nil {
		if err := throughputPlot(*tp, filepath.Join(out, "throughput.svg")); err != nil {
			return err
		}
		md.WriteString("\n## Throughput\n\nOne TCP stream through `lace0` between two lab nodes: Wirelace's direct path, stock wireguard-go (its own Bind) between the same nodes, and Wirelace through the relay.\n\n![throughput](throughput.svg)\n\n| path | Gbit/s (mean) | per round | CPU s/Gbit | retransmits |\n|---|---|---|---|---|\n")
		for _, p := range tp.Paths {
			fmt.Fprintf(&md, "| %s | %.2f | %s | %.2f | %.2f%% |\n", p.Name, p.Gbps, floats(p.RoundsGbps, "%.2f"), p.CPUPerGbit, p.RetransmitPct)
		}
	}
	if r.memory != nil {
		if err := memorySection(*r.memory, &md, filepath.Join(out, "memory.svg")); err != nil {
			return err
		}
	}
	if fp := r.firstPacket; fp != nil {
		if err := firstPacketPlot(*fp, filepath.Join(out, "first-packet.svg")); err != nil {
			return err
		}
		fmt.Fprintf(&md, "\n## First packet\n\n%d new pairs of nodes behind two symmetric NATs (relay only): from both daemons ready to the first answered ping (every 50 ms). p50 %.0f ms, max %.0f ms. A first handshake lost before the pair has a route costs WireGuard's 5 s retry.\n\n![first packet](first-packet.svg)\n", fp.Trials, fp.P50Ms, fp.MaxMs)
	}
	if r.join != nil {
		joinSection(*r.join, &md)
	}
	if ca := r.cni; ca != nil {
		if err := cniPlot(*ca, filepath.Join(out, "cni-add.svg")); err != nil {
			return err
		}
		md.WriteString("\n## CNI ADD\n\nPods added on one node through libcni, as a runtime calls the plugins, several at a time: Wirelace's plugins against the reference ptp + host-local (IPv4) in the same run, without peers and with many.\n\n![CNI ADD latency](cni-add.svg)\n\n| plugin | peers | p50 | p99 |\n|---|---|---|---|\n")
		for _, r := range ca.Runs {
			fmt.Fprintf(&md, "| %s | %d | %.1f ms | %.1f ms |\n", r.Plugin, r.Peers, r.P50Ms, r.P99Ms)
		}
	}
	if sc := r.scale; len(sc) > 0 {
		if err := scalePlots(sc, out); err != nil {
			return err
		}
		md.WriteString("\n## The control plane at scale\n\nOne real daemon watching nodes that exist as API objects in the lab's kube-apiserver.\n\n![join latency](scale-join.svg) ![daemon RSS](scale-rss.svg)\n\n| nodes | join p50 | join max | burst applied after last create | idle CPU | RSS | API writes/min | API reads/min |\n|---|---|---|---|---|---|---|---|\n")
		for _, s := range sc {
			burst := "-"
			if s.BurstNodes > 0 {
				burst = fmt.Sprintf("%.0f ms (%d nodes)", s.BurstMs, s.BurstNodes)
			}
			fmt.Fprintf(&md, "| %d | %.0f ms | %.0f ms | %s | %.2f%% of a core | %.0f MiB | %.1f | %.1f |\n",
				s.Nodes, s.JoinP50Ms, s.JoinMaxMs, burst, s.CPUPercent, s.RSSMiB, s.WritesPerMin, s.ReadsPerMin)
		}
		md.WriteString(dataPlaneMarkdown(sc))
	}
	if r.failover != nil {
		if err := failoverSection(*r.failover, out, &md); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(out, "report.md"), []byte(md.String()), 0o644)
}

// read decodes dir/name into v; a missing file is no error (ok false).
func read(dir, name string, v any) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	return true, nil
}

func floats(v []float64, format string) string {
	s := make([]string, len(v))
	for i, f := range v {
		s[i] = fmt.Sprintf(format, f)
	}
	return strings.Join(s, ", ")
}

// joinSection is a table of the join trials: each new node, and when each
// running node first reached it.
func joinSection(j Join, md *strings.Builder) {
	fmt.Fprintf(md, "\n## A node joins\n\nA public node, one behind a cone NAT and one behind a symmetric NAT are running; new nodes start by turns on the internet, behind a cone NAT and behind a symmetric NAT of their own. From the moment each new node's MeshNode is seen, every running node pings it every 50 ms: the time to the last of their first replies is when the new node is reachable from all nodes. p50 %.0f ms, max %.0f ms.\n\n| new node | where | reachable from all | from each |\n|---|---|---|---|\n", j.P50Ms, j.MaxMs)
	for _, t := range j.Trials {
		from := make([]string, len(t.From))
		for i, f := range t.From {
			from[i] = fmt.Sprintf("%s %.0f ms", f.Node, f.Ms)
		}
		fmt.Fprintf(md, "| %s | %s | %.0f ms | %s |\n", t.Node, t.Kind, t.Ms, strings.Join(from, ", "))
	}
}
