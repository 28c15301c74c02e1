package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/wirelace/wirelace/e2e/benchreport"
	"github.com/wirelace/wirelace/e2e/lab"
)

// The first packet of a new pair that can only use the relay (both nodes
// behind symmetric NATs): the time from both daemons being ready to the
// first answered ping, pinging every 50 ms from the moment they are.
// WireGuard sends its first handshake before the pair has a route and
// retries only after 5 s, so a lost first handshake shows as ~5 s.
const firstPacketTrials = 10

// pingReply matches a reply line of `ping -D`: its timestamp.
var pingReply = regexp.MustCompile(`^\[(\d+\.\d+)\] \d+ bytes from`)

func benchFirstPacket(ctx context.Context, root string) error {
	say("First packet: %d new relay-only pairs (both nodes behind symmetric NATs)", firstPacketTrials)
	var res benchreport.FirstPacket
	err := withLab(ctx, lab.Options{Root: root}, false, func(l *lab.Lab) error {
		if _, err := l.AddRelay(ctx, "relay1"); err != nil {
			return err
		}
		s1, err := l.AddSite(ctx, "cloud1", lab.NATSymmetric)
		if err != nil {
			return err
		}
		s2, err := l.AddSite(ctx, "cloud2", lab.NATSymmetric)
		if err != nil {
			return err
		}
		for trial := range firstPacketTrials {
			d, err := firstPacket(ctx, l, trial, s1, s2)
			if err != nil {
				return err
			}
			fmt.Printf("  pair %2d: first reply %6.0f ms after both daemons were ready\n", trial, ms(d))
			res.Ms = append(res.Ms, ms(d))
		}
		return nil
	})
	if err != nil {
		return err
	}
	sorted := slices.Sorted(slices.Values(res.Ms))
	res.Trials, res.P50Ms, res.MaxMs = len(sorted), sorted[len(sorted)/2], sorted[len(sorted)-1]
	fmt.Printf("  p50 %.0f ms, max %.0f ms\n", res.P50Ms, res.MaxMs)
	return writeBenchJSON(root, benchreport.FirstPacketFile, res)
}

// firstPacket starts a new pair, one node at each site, and times its
// first answered ping.
func firstPacket(ctx context.Context, l *lab.Lab, trial int, s1, s2 *lab.Site) (time.Duration, error) {
	a, err := l.AddNode(ctx, fmt.Sprintf("x%d", trial), lab.InSite(s1))
	if err != nil {
		return 0, err
	}
	b, err := l.AddNode(ctx, fmt.Sprintf("y%d", trial), lab.InSite(s2))
	if err != nil {
		return 0, err
	}
	defer a.Stop()
	defer b.Stop()
	for _, n := range []*lab.Node{a, b} {
		if err := n.Start(); err != nil {
			return 0, err
		}
	}
	for _, n := range []*lab.Node{a, b} {
		if err := n.WaitReady(ctx, 30*time.Second); err != nil {
			return 0, err
		}
	}
	ready := time.Now()
	sb, err := b.Status(ctx)
	if err != nil || len(sb.MeshIPs) == 0 {
		return 0, fmt.Errorf("%s has no mesh IP: %v", b.Name, err)
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", a.NetNS, "ping", "-n", "-D", "-i", "0.05", "-W", "1", "-w", "12", sb.MeshIPs[0])
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := pingReply.FindStringSubmatch(sc.Text()); m != nil {
			ts, _ := strconv.ParseFloat(m[1], 64)
			return time.Unix(0, int64(ts*1e9)).Sub(ready), nil
		}
	}
	return 0, fmt.Errorf("pair %s-%s: no reply within 12 s", a.Name, b.Name)
}

// writeReport turns the JSON of the last bench runs into docs/bench
// (report.md and its pictures), which the README shows.
func writeReport(root string) error {
	out := filepath.Join(root, "docs", "bench")
	if err := benchreport.Write(filepath.Join(root, ".cache", "bench"), out); err != nil {
		return err
	}
	fmt.Printf("  report written to %s\n", filepath.Join(out, "report.md"))
	return nil
}

// writeBenchJSON writes v as .cache/bench/name.
func writeBenchJSON(root, name string, v any) error {
	out := filepath.Join(root, ".cache", "bench", name)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("  written to %s\n", out)
	return nil
}
