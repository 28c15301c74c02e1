package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/wirelace/wirelace/api/vocab"
	"github.com/wirelace/wirelace/e2e/benchreport"
	"github.com/wirelace/wirelace/e2e/lab"
)

// Paths under change: a public node, a node behind a home router (cone
// NAT) and one behind a cloud NAT gateway (symmetric), one relay. First
// the steady state (benchSteady): with every pair talking a little, no
// path should change and each active peer should cost about one probe
// every 3 s. Then a steady 20/s ping between pods on the cone and the
// public node while their direct path is cut at the home router and
// restored: the largest gap in the replies, when the relay took over, and
// how soon after the restore the pair is direct again.
const (
	cutInterval = 50 * time.Millisecond
	// cutBefore and cutHold: pinging before the cut, and on the relay
	// alone before the restore; cutAfter: pinging once direct again.
	cutBefore = 3 * time.Second
	cutHold   = 3 * time.Second
	cutAfter  = 3 * time.Second
)

// failoverTopology: node names are also the peer names in the results.
var failoverTopology = lab.Topology{
	Relays: []string{"relay1"},
	Sites:  map[string]lab.NAT{"home": lab.NATCone, "cloud": lab.NATSymmetric},
	Nodes:  map[string]lab.TopoNode{"pub": {}, "cone": {Site: "home"}, "sym": {Site: "cloud"}},
}

func benchFailover(ctx context.Context, root string, steady time.Duration, keep bool) error {
	say("Paths: a public node, one behind a cone NAT, one behind a symmetric NAT, one relay")
	var res benchreport.Failover
	err := withLab(ctx, lab.Options{Root: root}, keep, func(l *lab.Lab) error {
		b, err := l.Build(ctx, failoverTopology)
		if err != nil {
			return err
		}
		pub, cone, sym := b.Nodes["pub"], b.Nodes["cone"], b.Nodes["sym"]
		for _, p := range []struct {
			a, b *lab.Node
			path vocab.Path
		}{{pub, cone, vocab.PathDirect}, {pub, sym, vocab.PathDirect}, {cone, sym, vocab.PathRelay}} {
			if err := waitPathBoth(ctx, p.a, p.b, string(p.path)); err != nil {
				return err
			}
		}
		say("Steady state for %s, each pair pinging every %s (targets: no path change, about one probe per peer every 3 s)", steady, steadyTraffic)
		if res.Steady, err = benchSteady(ctx, []*lab.Node{pub, cone, sym}, steady); err != nil {
			return err
		}
		printSteady(res.Steady)
		say("Failover: %.0f/s ping from a pod on %s to a pod on %s, their direct path cut at %s's router and restored",
			time.Second.Seconds()/cutInterval.Seconds(), cone.Name, pub.Name, b.Sites["home"].Name)
		res.Cut, err = cutAndRestore(ctx, b.Sites["home"], cone, pub)
		return err
	})
	if err != nil {
		return err
	}
	printCut(res.Cut)
	return writeBenchJSON(root, benchreport.FailoverFile, res)
}

// waitPathBoth waits until a and b each say the other is on path want.
func waitPathBoth(ctx context.Context, a, b *lab.Node, want string) error {
	if err := waitPath(ctx, a, b, want); err != nil {
		return err
	}
	return waitPath(ctx, b, a, want)
}

// cutAndRestore pings a pod on to from a pod on from, cuts their direct
// path at site's router, waits for from to use the relay alone, restores
// the path and waits for both to be direct again.
func cutAndRestore(ctx context.Context, site *lab.Site, from, to *lab.Node) (benchreport.FailoverCut, error) {
	var c benchreport.FailoverCut
	src, err := from.AddPod(ctx, "pf")
	if err != nil {
		return c, err
	}
	dst, err := to.AddPod(ctx, "pt")
	if err != nil {
		return c, err
	}
	ip := dst.IPs()[0]
	if err := waitFor(ctx, func() error { return src.Ping(ctx, ip, 1) }); err != nil {
		return c, fmt.Errorf("pods on %s and %s do not reach each other: %w", from.Name, to.Name, err)
	}
	if err := waitPathBoth(ctx, from, to, string(vocab.PathDirect)); err != nil {
		return c, err
	}
	pg, err := lab.StartPinger(src.NetNS, ip, cutInterval)
	if err != nil {
		return c, err
	}
	start := time.Now()
	stopped := false
	defer func() {
		if !stopped {
			pg.Stop()
		}
	}()
	// set cuts (on) or restores the path, after waiting wait, and says
	// when it did.
	set := func(wait time.Duration, on bool) (time.Time, error) {
		if err := sleep(ctx, wait); err != nil {
			return time.Time{}, err
		}
		if err := site.Blackhole(ctx, to.IP, on); err != nil {
			return time.Time{}, err
		}
		now := time.Now()
		fmt.Printf("  direct path %s at %s\n", map[bool]string{true: "cut", false: "restored"}[on], now.Format("15:04:05.000"))
		return now, nil
	}
	cut, err := set(cutBefore, true)
	if err != nil {
		return c, err
	}
	if err := waitPath(ctx, from, to, string(vocab.PathRelay)); err != nil {
		return c, fmt.Errorf("after the cut: %w", err)
	}
	restore, err := set(cutHold, false)
	if err != nil {
		return c, err
	}
	if err := waitPathBoth(ctx, from, to, string(vocab.PathDirect)); err != nil {
		return c, fmt.Errorf("after the restore: %w", err)
	}
	if err := sleep(ctx, cutAfter); err != nil {
		return c, err
	}
	pings := pg.Stop()
	stopped = true
	var events []pathEvent
	for _, pair := range [][2]*lab.Node{{from, to}, {to, from}} {
		ev, err := pathEvents(pair[0].LogPath, pair[0].Name, start, time.Now())
		if err != nil {
			return c, err
		}
		for _, e := range ev {
			if e.Peer == pair[1].Name {
				events = append(events, e)
			}
		}
	}
	c = analyseCut(pings, events, from.Name, to.Name, cut, restore)
	c.IntervalMs = ms(cutInterval)
	return c, nil
}

// analyseCut turns the pings and the pair's path changes into the
// report's numbers, times relative to the cut. Pings sent before the
// restore belong to the cut, the others to the failback; a gap belongs to
// the phase of the reply that opened it.
func analyseCut(pings []lab.Ping, events []pathEvent, from, to string, cut, restore time.Time) benchreport.FailoverCut {
	c := benchreport.FailoverCut{From: from, To: to, RestoreS: restore.Sub(cut).Seconds()}
	var arrivals []time.Time
	for _, p := range pings {
		s := benchreport.PingSample{T: p.Sent.Sub(cut).Seconds(), Lost: p.Lost}
		if !p.Lost {
			s.RTTMs = ms(p.RTT)
			arrivals = append(arrivals, p.Arrived())
			if p.Sent.After(cut) && (c.ResumedMs == 0 || ms(p.Arrived().Sub(cut)) < c.ResumedMs) {
				c.ResumedMs = ms(p.Arrived().Sub(cut))
			}
		}
		c.Pings = append(c.Pings, s)
		switch {
		case p.Lost && p.Sent.Before(restore):
			c.LostCut++
		case p.Lost:
			c.LostFailback++
		}
	}
	slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(arrivals); i++ {
		gap := ms(arrivals[i].Sub(arrivals[i-1]))
		if arrivals[i-1].Before(restore) {
			c.LargestGapMs = max(c.LargestGapMs, gap)
		} else {
			c.FailbackGapMs = max(c.FailbackGapMs, gap)
		}
	}
	slices.SortFunc(events, func(a, b pathEvent) int { return a.At.Compare(b.At) })
	// Both sides were direct when the pings started.
	path := map[string]string{from: string(vocab.PathDirect), to: string(vocab.PathDirect)}
	failedBack := false
	for _, e := range events {
		c.Events = append(c.Events, e.report(cut))
		path[e.Node] = e.To
		if e.Node == from && e.To == string(vocab.PathRelay) && e.At.After(cut) && c.RelayAloneMs == 0 {
			c.RelayAloneMs = ms(e.At.Sub(cut))
		}
		if e.At.After(restore) && !failedBack && path[from] == string(vocab.PathDirect) && path[to] == string(vocab.PathDirect) {
			c.FailbackMs, failedBack = ms(e.At.Sub(restore)), true
		}
	}
	return c
}

func printCut(c benchreport.FailoverCut) {
	fmt.Printf("  largest gap across the cut     %6.0f ms (target < 500 ms), %d of the pings sent before the restore lost\n", c.LargestGapMs, c.LostCut)
	fmt.Printf("  first reply after the cut      %6.0f ms\n", c.ResumedMs)
	fmt.Printf("  %s on the relay alone       %6.0f ms after the cut\n", c.From, c.RelayAloneMs)
	fmt.Printf("  failback: both sides direct    %6.0f ms after the restore (target < 2000 ms)\n", c.FailbackMs)
	fmt.Printf("  across the failback            largest gap %.0f ms, %d lost\n", c.FailbackGapMs, c.LostFailback)
	for _, e := range c.Events {
		printEvent(e)
	}
}

func printEvent(e benchreport.PathEvent) {
	fmt.Printf("    %+8.3f s  %s sees %s: %s → %s (%s)\n", e.T, e.Node, e.Peer, e.From, e.To, e.Reason)
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
