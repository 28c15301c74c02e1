package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wirelace/wirelace/e2e/lab"
)

// pinger runs a steady 20 packets/s ping from a pod and records the time of
// every reply, to measure the largest gap in connectivity.
type pinger struct {
	cmd     *exec.Cmd
	replies chan float64 // reply timestamps (unix seconds, from ping -D)
	done    chan struct{}
	times   []float64
}

var pingLine = regexp.MustCompile(`^\[(\d+\.\d+)\] \d+ bytes from`)

func startPinger(t *testing.T, p *lab.Pod, ip string) *pinger {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", p.NetNS, "ping", "-n", "-D", "-i", "0.05", "-W", "1", ip)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pg := &pinger{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(pg.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := pingLine.FindStringSubmatch(sc.Text()); m != nil {
				ts, _ := strconv.ParseFloat(m[1], 64)
				pg.times = append(pg.times, ts)
			}
		}
	}()
	t.Cleanup(func() { pg.stop() })
	return pg
}

// stop ends the ping and returns the reply times.
func (pg *pinger) stop() []float64 {
	if pg.cmd.Process != nil {
		pg.cmd.Process.Kill()
	}
	<-pg.done
	pg.cmd.Wait()
	return pg.times
}

// maxGap is the largest interval between consecutive replies.
func maxGap(times []float64) time.Duration {
	var worst float64
	for i := 1; i < len(times); i++ {
		worst = max(worst, times[i]-times[i-1])
	}
	return time.Duration(worst * float64(time.Second))
}

// TestFailover: a steady ping between two pods on a direct path; the direct
// path is cut at a router; traffic goes on through the relay with a short
// gap; the path is restored and the pair returns to direct.
func TestFailover(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	if _, err := l.AddRelay(ctx, "relay1"); err != nil {
		t.Fatal(err)
	}
	home, err := l.AddSite(ctx, "home", lab.NATCone)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := l.AddNode(ctx, "pub")
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.AddNode(ctx, "a", lab.InSite(home))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*lab.Node{pub, a} {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*lab.Node{pub, a} {
		if err := n.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	expectPath(t, pub, a, "direct", 15*time.Second)
	pa, err := a.AddPod(ctx, "pa")
	if err != nil {
		t.Fatal(err)
	}
	pp, err := pub.AddPod(ctx, "pp")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "pods reach each other", func() error { return pa.Ping(ctx, pp.IPs()[0], 1) })

	pg := startPinger(t, pa, pp.IPs()[0])
	time.Sleep(3 * time.Second)
	cut := time.Now()
	if err := home.Blackhole(ctx, pub.IP, true); err != nil {
		t.Fatal(err)
	}
	expectPathOneWay(t, a, pub, "relay", 20*time.Second)
	time.Sleep(3 * time.Second) // traffic flows through the relay for a while
	times := pg.stop()
	// The gap only means something if traffic flowed before the cut and
	// kept flowing after it.
	if len(times) < 40 || times[0] > float64(cut.UnixNano())/1e9 || times[len(times)-1] < float64(cut.Add(3*time.Second).UnixNano())/1e9 {
		t.Fatalf("pings did not flow across the cut: %d replies", len(times))
	}
	gapDuringCut := maxGap(times)
	t.Logf("largest gap in 20/s pings across the cut: %s (relay took over %s after the cut)", gapDuringCut, time.Since(cut).Round(time.Millisecond))
	if gapDuringCut >= 2*time.Second {
		t.Fatalf("largest gap %s, want < 2s", gapDuringCut)
	}

	if err := home.Blackhole(ctx, pub.IP, false); err != nil {
		t.Fatal(err)
	}
	lifted := time.Now()
	expectPath(t, pub, a, "direct", 60*time.Second)
	t.Logf("back to direct %s after the path returned", time.Since(lifted).Round(time.Millisecond))
}

// expectPathOneWay waits until a reports path want for b.
func expectPathOneWay(t *testing.T, a, b *lab.Node, want string, within time.Duration) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("%s sees %s on %s", a.Name, b.Name, want), func() error {
		p, err := peerStatus(context.Background(), a, b)
		if err != nil {
			return err
		}
		if p.Path != want {
			return fmt.Errorf("%s (%s)", p.Path, p.PathReason)
		}
		return nil
	})
}

// TestRelayRestartAndRebinding: relayed pairs survive a relay restart
// (recovering within 5 s of it coming back) and, with two relays, losing
// one loses nothing; a NAT that forgets its mappings (conntrack flushed)
// costs a direct pair less than 10 s.
func TestRelayRestartAndRebinding(t *testing.T) {
	nl := newNATLab(t)
	ctx := context.Background()
	n := nl.nodes
	expectPath(t, n["s1"], n["s2"], "relay", 15*time.Second)
	s2 := status(t, n["s2"])

	// Two relays: kill one, the relayed pair loses nothing.
	relays := nl.l.Relays()
	loss := pingLoss(t, n["s1"], s2.MeshIPs[0], func() {
		if err := relays[0].Kill(); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("ping loss while relay1 died (relay2 still up): %d", loss)
	if loss > 0 {
		t.Fatalf("lost %d pings when one of two relays died", loss)
	}

	// Both gone, then one back: recovery within 5 s.
	if err := relays[1].Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := relays[0].Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	eventually(t, 5*time.Second, "relayed pair recovers after the relay restarts", func() error {
		return n["s1"].Ping(ctx, s2.MeshIPs[0], 1)
	})
	t.Logf("relayed pair recovered %s after the relay came back", time.Since(back).Round(time.Millisecond))
	if err := relays[1].Start(); err != nil {
		t.Fatal(err)
	}

	// Rebinding: a1 (cone) ↔ b1 (cone) direct; flush a1's router.
	expectPath(t, n["a1"], n["b1"], "direct", 15*time.Second)
	b1 := status(t, n["b1"])
	if err := nl.sites["homea"].FlushConntrack(ctx); err != nil {
		t.Fatal(err)
	}
	flushed := time.Now()
	eventually(t, 10*time.Second, "a1↔b1 recovers after the NAT forgot its mappings", func() error {
		return n["a1"].Ping(ctx, b1.MeshIPs[0], 1)
	})
	t.Logf("a1↔b1 recovered %s after the conntrack flush", time.Since(flushed).Round(time.Millisecond))

	// A symmetric NAT picks a new random port after the flush, so pub must
	// learn s1's new mapping (from s1's probes) to keep the direct path.
	before := expectPath(t, n["pub"], n["s1"], "direct", 15*time.Second)
	s1 := status(t, n["s1"])
	if err := nl.sites["clouda"].FlushConntrack(ctx); err != nil {
		t.Fatal(err)
	}
	flushed = time.Now()
	eventually(t, 10*time.Second, "pub↔s1 recovers on a new mapping", func() error {
		if err := n["pub"].Ping(ctx, s1.MeshIPs[0], 1); err != nil {
			return err
		}
		p, err := peerStatus(ctx, n["pub"], n["s1"])
		if err != nil {
			return err
		}
		if p.Path != "direct" || p.PathAddr == before.PathAddr {
			return fmt.Errorf("pub reaches s1 %s at %s (was %s)", p.Path, p.PathAddr, before.PathAddr)
		}
		return nil
	})
	after, _ := peerStatus(ctx, n["pub"], n["s1"])
	t.Logf("pub↔s1 direct again %s after the flush, s1's mapping %s → %s", time.Since(flushed).Round(time.Millisecond), before.PathAddr, after.PathAddr)
}

// pingLoss pings ip from n at 20/s for a few seconds around during(), and
// returns how many went unanswered.
func pingLoss(t *testing.T, n *lab.Node, ip string, during func()) int {
	t.Helper()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(n.PID()), "-n", "ping", "-n", "-q", "-i", "0.05", "-c", "100", "-W", "1", ip)
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	during()
	cmd.Wait()
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("cannot read ping summary: %s", out.String())
	}
	sent, _ := strconv.Atoi(m[1])
	got, _ := strconv.Atoi(m[2])
	return sent - got
}
