package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/e2e/benchreport"
	"github.com/wirelace/wirelace/e2e/lab"
)

// benchDuration is how long each iperf3 run lasts; rounds alternate the
// contenders so that drifting machine load hits them alike.
const (
	benchDuration = 8 * time.Second
	benchRounds   = 3
)

// iperfResult is what one iperf3 run measured.
type iperfResult struct {
	Gbps        float64
	Retransmits int
	// Segments is how many TCP segments the sender sent (bytes / MSS), the
	// denominator of the retransmit rate.
	Segments float64
	// CPUPerGbit is CPU seconds the two WireGuard processes (both ends) used
	// per Gbit moved: the cost of the data plane, iperf3 itself excluded.
	CPUPerGbit float64
	// RelayCPUPerGbit is the same for the relay process, when the run went
	// through it.
	RelayCPUPerGbit float64
}

// RetransmitPct is retransmits as a percentage of segments sent.
func (r iperfResult) RetransmitPct() float64 {
	if r.Segments == 0 {
		return 0
	}
	return 100 * float64(r.Retransmits) / r.Segments
}

// bench measures TCP throughput through lace0 on a direct path against
// stock wireguard-go (its default Bind) between the same two namespaces in
// the same run, and through the relay, and prints the ratios.
func bench(ctx context.Context, root, wireguardGo string) (err error) {
	say("Building the bench lab: two public nodes, two nodes behind symmetric NATs, a relay")
	l, err := lab.New(ctx, lab.Options{Root: root, Log: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if err == nil {
			l.RemoveDir()
		}
	}()
	// No per-client rate limit: the bench measures what the relay path can
	// carry, not the default limit (100 MB/s per client).
	rl1, err := l.AddRelay(ctx, "relay1", "--rate", "0", "--log-level", "info")
	if err != nil {
		return err
	}
	n1, err := l.AddNode(ctx, "n1")
	if err != nil {
		return err
	}
	n2, err := l.AddNode(ctx, "n2")
	if err != nil {
		return err
	}
	var relayed []*lab.Node
	for i := 1; i <= 2; i++ {
		site, err := l.AddSite(ctx, fmt.Sprintf("cloud%d", i), lab.NATSymmetric)
		if err != nil {
			return err
		}
		n, err := l.AddNode(ctx, fmt.Sprintf("s%d", i), lab.InSite(site))
		if err != nil {
			return err
		}
		relayed = append(relayed, n)
	}
	// WIRELACE_LAB_PROFILE=<dir> also records CPU profiles of both
	// daemons over the first direct and relayed runs
	// (<dir>/{direct,relay}-{sender,receiver}.pprof).
	profileDir := os.Getenv("WIRELACE_LAB_PROFILE")
	all := append([]*lab.Node{n1, n2}, relayed...)
	for _, n := range all {
		args := []string{"--log-level", "info"}
		if n == n1 || n == n2 || profileDir != "" {
			// n1's and n2's heap profiles say where the memory of a
			// transfer goes.
			args = append(args, "--profiling")
		}
		if err := n.Start(args...); err != nil {
			return err
		}
	}
	for _, n := range all {
		if err := n.WaitReady(ctx, 30*time.Second); err != nil {
			return err
		}
	}
	if err := waitPath(ctx, n1, n2, "direct"); err != nil {
		return err
	}
	if err := waitPath(ctx, relayed[0], relayed[1], "relay"); err != nil {
		return err
	}

	stockIP, stockPIDs, err := startStock(ctx, wireguardGo, n1, n2)
	if err != nil {
		return fmt.Errorf("stock wireguard-go: %w", err)
	}
	meshIP := func(n *lab.Node) string {
		s, _ := n.Status(ctx)
		return s.MeshIPs[0]
	}
	if _, err := n2.Spawn("iperf3-server", "iperf3", "-s"); err != nil {
		return err
	}
	if _, err := relayed[1].Spawn("iperf3-server", "iperf3", "-s"); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	relayPID, err := relayPID(rl1)
	if err != nil {
		return err
	}

	mem, err := watchMemory([]string{"wirelace sender", "wirelace receiver", "stock sender", "stock receiver"},
		[]int{n1.PID(), n2.PID(), stockPIDs[0], stockPIDs[1]}, n1, n2)
	if err != nil {
		return err
	}

	say("TCP throughput, one stream, %s per run, %d rounds alternating", benchDuration, benchRounds)
	var wl, stock, relay []iperfResult
	wlPIDs := []int{n1.PID(), n2.PID()}
	relayPIDs := []int{relayed[0].PID(), relayed[1].PID()}
	for r := 0; r < benchRounds; r++ {
		for _, c := range []struct {
			name string
			from *lab.Node
			to   string
			pids []int
			// relay is the relay's pid when the path goes through it.
			relay int
			into  *[]iperfResult
			// daemons are Wirelace's ends (sender, receiver), profiled
			// as <profile>-{sender,receiver}.pprof.
			daemons [2]*lab.Node
			profile string
		}{
			{"wirelace direct", n1, meshIP(n2), wlPIDs, 0, &wl, [2]*lab.Node{n1, n2}, "direct"},
			{"stock wireguard-go", n1, stockIP, stockPIDs, 0, &stock, [2]*lab.Node{}, ""},
			{"wirelace via relay", relayed[0], meshIP(relayed[1]), relayPIDs, relayPID, &relay, [2]*lab.Node{relayed[0], relayed[1]}, "relay"},
		} {
			var profiled chan error
			if profileDir != "" && r == 0 && c.profile != "" {
				profiled = profileRun(ctx, filepath.Join(profileDir, c.profile), c.daemons)
			}
			res, err := iperf(ctx, c.from, c.to, c.pids, c.relay)
			if profiled != nil {
				if perr := errors.Join(<-profiled, <-profiled); perr != nil {
					return fmt.Errorf("profile: %w", perr)
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			*c.into = append(*c.into, res)
			mem.afterRun(c.pids)
			if c.into == &wl && r == benchRounds-1 {
				// Last, as the profile's GC frees what the pools hold
				// one cycle early.
				if err := mem.profileHeap(ctx); err != nil {
					return err
				}
			}
			line := fmt.Sprintf("  round %d  %-20s %6.2f Gbit/s  retransmits %6d (%5.2f%%)  CPU %.2f s/Gbit",
				r+1, c.name, res.Gbps, res.Retransmits, res.RetransmitPct(), res.CPUPerGbit)
			if c.relay != 0 {
				line += fmt.Sprintf("  relay CPU %.2f s/Gbit", res.RelayCPUPerGbit)
			}
			fmt.Println(line)
		}
	}
	w, s, rl := mean(wl), mean(stock), mean(relay)
	say("Ratios (targets: direct ≥ 0.95× stock, CPU per Gbit/s ≤ 1.1× stock, relay ≥ 0.7× direct with retransmits < 1%% of segments)")
	fmt.Printf("  direct / stock throughput        %.2f\n", w.Gbps/s.Gbps)
	fmt.Printf("  direct / stock CPU per Gbit      %.2f\n", w.CPUPerGbit/s.CPUPerGbit)
	fmt.Printf("  relay / direct throughput        %.2f (per round: %s)\n", rl.Gbps/w.Gbps, roundRatios(relay, wl))
	fmt.Printf("  relay process CPU per Gbit       %.2f s\n", rl.RelayCPUPerGbit)
	fmt.Printf("  retransmits per run: direct %d (%.2f%%), stock %d (%.2f%%), relay %d (%.2f%%)\n",
		w.Retransmits, w.RetransmitPct(), s.Retransmits, s.RetransmitPct(), rl.Retransmits, rl.RetransmitPct())
	if err := writeBenchJSON(root, benchreport.ThroughputFile, benchreport.Throughput{
		Rounds: benchRounds,
		Paths: []benchreport.PathThroughput{
			pathThroughput("wirelace direct", wl),
			pathThroughput("stock wireguard-go", stock),
			pathThroughput("wirelace via relay", relay),
		},
	}); err != nil {
		return err
	}

	say("Memory of the WireGuard processes around the transfers (target: < 80 MiB after, back near rest within %s)", memIdle)
	m, err := mem.rest(ctx, memIdle)
	if err != nil {
		return err
	}
	return writeBenchJSON(root, benchreport.MemoryFile, m)
}

// profileRun samples the CPU of the two daemons of a run, which starts
// now, over most of it.
func profileRun(ctx context.Context, prefix string, daemons [2]*lab.Node) chan error {
	done := make(chan error, 2)
	for i, role := range []string{"sender", "receiver"} {
		go func() {
			done <- cpuProfile(ctx, daemons[i], prefix+"-"+role+".pprof", benchDuration-2*time.Second)
		}()
	}
	return done
}

// pathThroughput summarises one path's rounds for the report.
func pathThroughput(name string, rounds []iperfResult) benchreport.PathThroughput {
	m := mean(rounds)
	out := benchreport.PathThroughput{Name: name, Gbps: m.Gbps, CPUPerGbit: m.CPUPerGbit, RelayCPUPerGbit: m.RelayCPUPerGbit, RetransmitPct: m.RetransmitPct()}
	for _, r := range rounds {
		out.RoundsGbps = append(out.RoundsGbps, r.Gbps)
	}
	return out
}

// roundRatios is a/b for each round: the machine's load drifts, so the
// spread of ratios measured side by side says more than one mean.
func roundRatios(a, b []iperfResult) string {
	var out []string
	for i := range min(len(a), len(b)) {
		out = append(out, fmt.Sprintf("%.2f", a[i].Gbps/b[i].Gbps))
	}
	return strings.Join(out, " ")
}

func mean(rs []iperfResult) iperfResult {
	var m iperfResult
	for _, r := range rs {
		m.Gbps += r.Gbps / float64(len(rs))
		m.CPUPerGbit += r.CPUPerGbit / float64(len(rs))
		m.RelayCPUPerGbit += r.RelayCPUPerGbit / float64(len(rs))
		m.Segments += r.Segments / float64(len(rs))
		m.Retransmits += r.Retransmits / len(rs)
	}
	return m
}

func waitPath(ctx context.Context, a, b *lab.Node, want string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s, err := a.Status(ctx)
		if err == nil {
			for _, p := range s.Peers {
				if p.Node == b.Name && p.Path == want {
					return nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s↔%s did not reach path %s", a.Name, b.Name, want)
}

// iperf runs one iperf3 client from n to ip, metering the CPU time of the
// WireGuard processes pids and, when not 0, of the relay process relay.
func iperf(ctx context.Context, n *lab.Node, ip string, pids []int, relay int) (iperfResult, error) {
	cpu0, rcpu0 := cpuSeconds(pids), cpuSeconds([]int{relay})
	out, err := n.Exec(ctx, "iperf3", "-c", ip, "-t", fmt.Sprint(int(benchDuration.Seconds())), "-J")
	if err != nil {
		return iperfResult{}, err
	}
	cpu, rcpu := cpuSeconds(pids)-cpu0, cpuSeconds([]int{relay})-rcpu0
	var j struct {
		Start struct {
			TCPMSSDefault int `json:"tcp_mss_default"`
		} `json:"start"`
		End struct {
			SumSent struct {
				Bytes       float64 `json:"bytes"`
				Retransmits int     `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 output: %w", err)
	}
	gbps := j.End.SumReceived.BitsPerSecond / 1e9
	gbits := gbps * benchDuration.Seconds()
	res := iperfResult{
		Gbps:        gbps,
		Retransmits: j.End.SumSent.Retransmits,
		CPUPerGbit:  cpu / gbits,
	}
	if j.Start.TCPMSSDefault > 0 {
		res.Segments = j.End.SumSent.Bytes / float64(j.Start.TCPMSSDefault)
	}
	if relay != 0 {
		res.RelayCPUPerGbit = rcpu / gbits
	}
	return res, nil
}

// cpuSeconds is the user+system CPU time of processes, from /proc.
func cpuSeconds(pids []int) float64 {
	var total float64
	for _, pid := range pids {
		if pid == 0 {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may contain spaces): state is
		// the first; utime and stime are the 12th and 13th after it.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		total += (ut + st) / clockTicks
	}
	return total
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

// startStock runs stock wireguard-go (its own default Bind) in n1 and n2 on
// interface wgstock0, port 51900, addresses 10.99.0.1 and .2, and returns
// n2's address and both processes' pids.
func startStock(ctx context.Context, bin string, n1, n2 *lab.Node) (string, []int, error) {
	type side struct {
		n    *lab.Node
		key  wgtypes.Key
		addr string
	}
	sides := []*side{{n: n1, addr: "10.99.0.1"}, {n: n2, addr: "10.99.0.2"}}
	var pids []int
	for _, s := range sides {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			return "", nil, err
		}
		s.key = k
	}
	for i, s := range sides {
		peer := sides[1-i]
		keyFile := filepath.Join(s.n.Dir, "stock.key")
		if err := os.WriteFile(keyFile, []byte(s.key.String()), 0o600); err != nil {
			return "", nil, err
		}
		// exec keeps the pid wireguard-go's own, for CPU metering.
		p, err := s.n.Spawn("wireguard-go", "env", "WG_PROCESS_FOREGROUND=1", bin, "-f", "wgstock0")
		if err != nil {
			return "", nil, err
		}
		pids = append(pids, p.Pid)
		if err := waitFor(ctx, func() error {
			_, err := lab.ExecIn(ctx, p, "wg", "show", "wgstock0")
			return err
		}); err != nil {
			return "", nil, err
		}
		cmds := [][]string{
			{"wg", "set", "wgstock0", "private-key", keyFile, "listen-port", "51900",
				"peer", peer.key.PublicKey().String(), "allowed-ips", peer.addr + "/32",
				"endpoint", netip.AddrPortFrom(peer.n.IP, 51900).String()},
			{"ip", "addr", "add", s.addr + "/24", "dev", "wgstock0"},
			{"ip", "link", "set", "wgstock0", "mtu", "1420", "up"},
		}
		for _, c := range cmds {
			if _, err := lab.ExecIn(ctx, p, c...); err != nil {
				return "", nil, err
			}
		}
	}
	return sides[1].addr, pids, nil
}

func waitFor(ctx context.Context, f func() error) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = f(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}
