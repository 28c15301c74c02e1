package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/e2e/benchreport"
	"github.com/wirelace/wirelace/e2e/lab"
)

// The first packet of a new pair that can only use the relay (both nodes
// behind symmetric NATs): the time from both daemons being ready to the
// first answered ping, pinging every 50 ms from the moment they are.
// WireGuard retries a lost handshake initiation only after 5 s, so a
// first handshake lost on the way shows as ~5 s. A trial over slowTrial
// prints both daemons' logs around it (see explainSlow).
const (
	firstPacketTrials = 20
	slowTrial         = time.Second
)

// pingReply matches a reply line of `ping -D`: its timestamp.
var pingReply = regexp.MustCompile(`^\[(\d+\.\d+)\] \d+ bytes from`)

func benchFirstPacket(ctx context.Context, root string) error {
	say("First packet: %d new relay-only pairs (both nodes behind symmetric NATs)", firstPacketTrials)
	var res benchreport.FirstPacket
	err := withLab(ctx, lab.Options{Root: root}, false, func(l *lab.Lab) error {
		relay, err := l.AddRelay(ctx, "relay1")
		if err != nil {
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
		seen, err := watchMeshNodes(ctx, l)
		if err != nil {
			return err
		}
		defer seen.stop()
		for trial := range firstPacketTrials {
			d, err := firstPacket(ctx, l, trial, s1, s2, relay, seen)
			if err != nil {
				return err
			}
			res.Ms = append(res.Ms, ms(d))
		}
		return nil
	})
	if err != nil {
		return err
	}
	sorted := slices.Sorted(slices.Values(res.Ms))
	res.Trials, res.P50Ms, res.MaxMs = len(sorted), sorted[len(sorted)/2], sorted[len(sorted)-1]
	slow := len(sorted) - sort.SearchFloat64s(sorted, ms(slowTrial)+1e-9)
	fmt.Printf("  p50 %.0f ms, max %.0f ms; %d of %d over %v\n", res.P50Ms, res.MaxMs, slow, len(sorted), slowTrial)
	return writeBenchJSON(root, benchreport.FirstPacketFile, res)
}

// firstPacket starts a new pair, one node at each site, and times its
// first answered ping; a slow one is explained from the logs.
func firstPacket(ctx context.Context, l *lab.Lab, trial int, s1, s2 *lab.Site, relay *lab.Relay, seen *meshNodesSeen) (time.Duration, error) {
	start := time.Now()
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
	reply, err := firstReply(ctx, a, sb.MeshIPs[0])
	if err != nil {
		return 0, fmt.Errorf("pair %s-%s: %w", a.Name, b.Name, err)
	}
	d := reply.Sub(ready)
	fmt.Printf("  pair %2d: first reply %6.0f ms after both daemons were ready", trial, ms(d))
	if at, ok := seen.both(a.Name, b.Name); ok {
		fmt.Printf(", %6.0f ms after both MeshNodes existed", ms(reply.Sub(at)))
	}
	fmt.Println()
	if d > slowTrial {
		explainSlow([]logSource{{a.Name, a.LogPath}, {b.Name, b.LogPath}, {relay.Name, relay.LogPath}}, start, reply, ready)
	}
	return d, nil
}

// meshNodesSeen is when the bench first saw each MeshNode, by name: the
// arrival of its watch event (the API's own timestamps have whole seconds),
// and the mesh IPs it claims.
type meshNodesSeen struct {
	stop func()
	mu   sync.Mutex
	at   map[string]time.Time
	ips  map[string][]string
	// changed is closed, and replaced, whenever a MeshNode is first seen.
	changed chan struct{}
}

func watchMeshNodes(ctx context.Context, l *lab.Lab) (*meshNodesSeen, error) {
	w, err := l.Dynamic.Resource(v1alpha1.MeshNodeResource).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("watch MeshNodes: %w", err)
	}
	s := &meshNodesSeen{stop: w.Stop, at: map[string]time.Time{}, ips: map[string][]string{}, changed: make(chan struct{})}
	go func() {
		for ev := range w.ResultChan() {
			o, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type != watch.Added {
				continue
			}
			ips, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "meshIPs")
			s.mu.Lock()
			if _, dup := s.at[o.GetName()]; !dup {
				s.at[o.GetName()] = time.Now()
				s.ips[o.GetName()] = ips
				close(s.changed)
				s.changed = make(chan struct{})
			}
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// both is when the later of the two MeshNodes was first seen.
func (s *meshNodesSeen) both(a, b string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ta, oka := s.at[a]
	tb, okb := s.at[b]
	if ta.Before(tb) {
		ta = tb
	}
	return ta, oka && okb
}

// wait returns when name's MeshNode was first seen and its first mesh IP,
// waiting up to timeout for it.
func (s *meshNodesSeen) wait(ctx context.Context, name string, timeout time.Duration) (time.Time, string, error) {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		at, ok := s.at[name]
		ips, changed := s.ips[name], s.changed
		s.mu.Unlock()
		if ok {
			if len(ips) == 0 {
				return at, "", fmt.Errorf("MeshNode %s claims no mesh IP", name)
			}
			return at, ips[0], nil
		}
		select {
		case <-changed:
		case <-deadline:
			return time.Time{}, "", fmt.Errorf("no MeshNode %s within %v", name, timeout)
		case <-ctx.Done():
			return time.Time{}, "", ctx.Err()
		}
	}
}

// firstReply pings ip from n every 50 ms and returns when the first reply
// came.
func firstReply(ctx context.Context, n *lab.Node, ip string) (time.Time, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.NetNS, "ping", "-n", "-D", "-i", "0.05", "-W", "1", "-w", "12", ip)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return time.Time{}, err
	}
	if err := cmd.Start(); err != nil {
		return time.Time{}, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := pingReply.FindStringSubmatch(sc.Text()); m != nil {
			ts, _ := strconv.ParseFloat(m[1], 64)
			return time.Unix(0, int64(ts*1e9)), nil
		}
	}
	return time.Time{}, errors.New("no reply within 12 s")
}

// logSource is a process's log file, by the name its lines are shown under.
type logSource struct{ name, path string }

// Lines of a slow trial worth showing: the first handshake's story (sent,
// received, retried), relay sessions, peers and paths, probes that failed.
var (
	storyLine = regexp.MustCompile(`[Hh]andshake|[Kk]eypair|relay conn|client connected|refused|peer configured|published MeshNode|path changed|not sent|not started|asking peer|cannot reach|NAT classified`)
	logTime   = regexp.MustCompile(`^time=(\S+) level=\S+ `)
	noise     = regexp.MustCompile(` device=lace0 component=wireguard-go`)
)

// explainSlow prints the story lines the logs wrote between from and a
// little after to, merged in time order, each timed from ready: what
// happened to the first handshake of a slow pair.
func explainSlow(srcs []logSource, from, to, ready time.Time) {
	type line struct {
		at   time.Time
		text string
	}
	var lines []line
	for _, src := range srcs {
		f, err := os.Open(src.path)
		if err != nil {
			fmt.Printf("    (no log of %s: %v)\n", src.name, err)
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			m := logTime.FindStringSubmatch(sc.Text())
			if m == nil || !storyLine.MatchString(sc.Text()) {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil || at.Before(from) || at.After(to.Add(300*time.Millisecond)) {
				continue
			}
			text := noise.ReplaceAllString(sc.Text()[len(m[0]):], "")
			lines = append(lines, line{at, fmt.Sprintf("%-7s %s", src.name, text)})
		}
		f.Close()
	}
	slices.SortStableFunc(lines, func(a, b line) int { return a.at.Compare(b.at) })
	fmt.Printf("    over %v: the logs from the start of the pair to its first reply, in ms from both ready:\n", slowTrial)
	for _, l := range lines {
		fmt.Printf("    %+7.0f %s\n", ms(l.at.Sub(ready)), l.text)
	}
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
