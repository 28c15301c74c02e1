package path

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wirelace/wirelace/api/vocab"
)

func TestNewPeerRelayAtOnce(t *testing.T) {
	p := NewPeer("b", t0)
	if d, r := p.Send(t0); d.IsValid() || !r {
		t.Fatalf("new peer: direct %v relay %v, want relay only", d, r)
	}
	if st := p.Status(t0); st.Path != vocab.PathRelay || st.Reason != "relay: no direct candidates" || st.Changes != 0 {
		t.Fatalf("status %+v", st)
	}
	a := p.Tick(t0)
	if len(a.Pings) != 0 || a.CallMeMaybe {
		t.Fatalf("no candidates, yet %+v", a)
	}

	p.SetCandidates([]Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}, {Addr: hostA, Kind: vocab.EndpointHost}}, vocab.NATConePortRestricted, vocab.NATConePortRestricted, t0)
	if d, r := p.Send(t0); d.IsValid() || !r {
		t.Fatal("not relay before any pong")
	}
	a = p.Tick(t0)
	if len(a.Pings) != 2 || !a.CallMeMaybe {
		t.Fatalf("first tick with candidates: %+v, want 2 pings and a CallMeMaybe", a)
	}
	if d, r := p.Send(t0); d.IsValid() || !r {
		t.Fatal("not relay while probing")
	}
	if st := p.Status(t0); st.Reason != "relay: probing 2 candidates" {
		t.Fatalf("reason %q", st.Reason)
	}
}

func TestPongGoesDirect(t *testing.T) {
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATConePortRestricted)
	w.up[stunA] = true
	w.rtt[stunA] = 400 * time.Microsecond
	w.run(0)
	if len(w.pings) != 1 || len(w.cmms) != 1 {
		t.Fatalf("pings %v cmms %v", w.pings, w.cmms)
	}
	w.wantPath(vocab.PathRelay, netip.AddrPort{})
	w.run(time.Millisecond)
	w.wantPath(vocab.PathDirect, stunA)
	d, r := w.p.Send(w.now)
	if d != stunA || r {
		t.Fatalf("Send %v %v, want direct only", d, r)
	}
	st := w.p.Status(w.now)
	if st.Reason != "direct: pong from 198.18.0.5:51820 in 0.4ms" || st.RTT != 400*time.Microsecond || st.Changes != 1 || !st.LastPong.Equal(t0.Add(400*time.Microsecond)) {
		t.Fatalf("status %+v", st)
	}
	if !st.NextAttempt.IsZero() {
		t.Fatalf("NextAttempt %v while direct", st.NextAttempt)
	}
}

// A pong from any address but the one pinged, with an unknown TxID, or too
// late, does not count.
func TestStalePongIgnored(t *testing.T) {
	p := NewPeer("b", t0)
	p.SetCandidates([]Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}, {Addr: hostA, Kind: vocab.EndpointHost}}, vocab.NATCone, vocab.NATCone, t0)
	a := p.Tick(t0)
	var tx [12]byte
	for _, pg := range a.Pings {
		if pg.To == stunA {
			tx = pg.TxID
		}
	}
	p.OnPong(stunA, [12]byte{1, 2, 3}, t0.Add(time.Millisecond))
	p.OnPong(hostA, tx, t0.Add(time.Millisecond)) // right txid, wrong source
	p.OnPong(newA, tx, t0.Add(time.Millisecond))
	if d, _ := p.Send(t0.Add(time.Millisecond)); d.IsValid() {
		t.Fatal("a pong that answers no ping of ours made the path direct")
	}
	p.OnPong(stunA, tx, t0.Add(PingTimeout+time.Millisecond)) // too late
	if d, _ := p.Send(t0.Add(PingTimeout + time.Millisecond)); d.IsValid() {
		t.Fatal("a pong after PingTimeout counted")
	}
	// After expiry the TxID is gone: replaying it later does nothing either.
	p.Tick(t0.Add(PingTimeout + 2*time.Millisecond))
	p.OnPong(stunA, tx, t0.Add(PingTimeout+3*time.Millisecond))
	if d, _ := p.Send(t0.Add(PingTimeout + 3*time.Millisecond)); d.IsValid() {
		t.Fatal("replayed pong counted")
	}

	// A fresh answer counts once; a replay of it does not move anything.
	now := t0.Add(10 * time.Second)
	a = p.Tick(now)
	for _, pg := range a.Pings {
		if pg.To == stunA {
			tx = pg.TxID
		}
	}
	p.OnPong(stunA, tx, now.Add(time.Millisecond))
	if d, _ := p.Send(now.Add(time.Millisecond)); d != stunA {
		t.Fatal("valid pong ignored")
	}
	st := p.Status(now.Add(time.Millisecond))
	p.OnPong(stunA, tx, now.Add(4*time.Second))
	if st2 := p.Status(now.Add(4 * time.Second)); !st2.LastPong.Equal(st.LastPong) {
		t.Fatal("replayed pong refreshed the path")
	}
}

// Steady state: ten simulated minutes of a healthy path, with and without
// traffic, must give exactly one change (relay → direct), never both paths
// and never the relay again.
func TestSteadyStateNoFlapping(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sendEvery time.Duration
		rtt       time.Duration
	}{
		{"idle lan", 0, 300 * time.Microsecond},
		{"idle wan", 0, 80 * time.Millisecond},
		{"one-way traffic lan", 50 * time.Millisecond, 300 * time.Microsecond},
		{"one-way traffic wan", 10 * time.Millisecond, 150 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATConePortRestricted, vocab.NATConePortRestricted)
			w.up[stunA] = true
			w.rtt[stunA] = tc.rtt
			w.sendEvery = tc.sendEvery
			w.run(10 * time.Minute)
			st := w.p.Status(w.now)
			if st.Changes != 1 || st.Path != vocab.PathDirect {
				t.Fatalf("status %+v, want direct with 1 change", st)
			}
			if w.everBoth || w.everRelayAfterDirect {
				t.Fatalf("both %v, relay after direct %v", w.everBoth, w.everRelayAfterDirect)
			}
			if len(w.cmms) != 1 {
				t.Fatalf("%d CallMeMaybes, want 1", len(w.cmms))
			}
			// Probe cost: a heartbeat about every TrustDirect-RefreshBefore
			// when idle; with traffic and no replies, a liveness ping about
			// every SuspectAfter + RTT.
			perMin := float64(len(w.pings)) / 10
			limit := float64(time.Minute)/float64(TrustDirect-RefreshBefore) + 2
			if tc.sendEvery > 0 {
				limit = float64(time.Minute)/float64(SuspectAfter+tc.rtt) + 2
			}
			if perMin > limit {
				t.Fatalf("%.1f pings a minute, want at most %.1f", perMin, limit)
			}
			t.Logf("%.1f pings/min", perMin)
		})
	}
}

// Loss of the direct path: direct only while trusted, then both paths for
// FallbackAfter, then the relay alone.
func TestLossFailover(t *testing.T) {
	t.Run("idle: trust expiry", func(t *testing.T) {
		w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATCone)
		w.up[stunA] = true
		w.run(time.Minute)
		w.wantPath(vocab.PathDirect, stunA)
		w.cut(stunA)
		lastPong := w.p.Status(w.now).LastPong
		expire := lastPong.Add(TrustDirect)

		w.run(expire.Add(-time.Millisecond).Sub(w.now))
		w.wantPath(vocab.PathDirect, stunA)
		w.run(2 * time.Millisecond)
		w.wantPath(vocab.PathBoth, stunA)
		if !strings.HasPrefix(w.p.Status(w.now).Reason, "direct+relay: 198.18.0.5:51820 unconfirmed for 5s") {
			t.Fatalf("reason %q", w.p.Status(w.now).Reason)
		}
		// The degraded phase starts a new attempt with a CallMeMaybe, so the
		// peer probes us too.
		if n := len(w.cmms); n != 2 {
			t.Fatalf("%d CallMeMaybes, want 2", n)
		}
		w.run(expire.Add(FallbackAfter - time.Millisecond).Sub(w.now))
		w.wantPath(vocab.PathBoth, stunA)
		if w.pingsTo(stunA, expire) < int(FallbackAfter/HeartbeatRetry)-1 {
			t.Fatalf("only %d pings to the doubted address", w.pingsTo(stunA, expire))
		}
		w.run(2 * time.Millisecond)
		w.wantPath(vocab.PathRelay, netip.AddrPort{})
		if st := w.p.Status(w.now); !strings.HasPrefix(st.Reason, "relay: direct path via 198.18.0.5:51820 lost") {
			t.Fatalf("reason %q", st.Reason)
		}
	})
	t.Run("busy: liveness ping", func(t *testing.T) {
		w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATCone)
		w.up[stunA] = true
		w.sendEvery = 50 * time.Millisecond // a 20/s ping, as in the failover target
		w.run(time.Minute)
		w.wantPath(vocab.PathDirect, stunA)
		cut := w.now
		w.cut(stunA)
		// The gap: packets sent direct only after the cut, before the relay
		// also carries them.
		for w.path() == vocab.PathDirect {
			w.run(10 * time.Millisecond)
		}
		gap := w.now.Sub(cut)
		if gap >= time.Second || gap > SuspectAfter+LivenessWait+100*time.Millisecond {
			t.Fatalf("failover gap %v", gap)
		}
		t.Logf("failover gap %v", gap)
		w.wantPath(vocab.PathBoth, stunA)
		both := w.now
		w.run(FallbackAfter - 20*time.Millisecond)
		w.wantPath(vocab.PathBoth, stunA)
		w.run(40 * time.Millisecond)
		w.wantPath(vocab.PathRelay, netip.AddrPort{})
		_ = both
	})
	t.Run("blip: one lost pong while busy", func(t *testing.T) {
		w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATCone)
		w.up[stunA] = true
		w.sendEvery = 50 * time.Millisecond
		w.run(time.Minute)
		w.cut(stunA)
		for w.path() == vocab.PathDirect {
			w.run(10 * time.Millisecond)
		}
		w.up[stunA] = true
		w.run(HeartbeatRetry + 10*time.Millisecond)
		w.wantPath(vocab.PathDirect, stunA)
		if st := w.p.Status(w.now); st.Changes != 3 {
			t.Fatalf("changes %d, want 3 (relay→direct→both→direct)", st.Changes)
		}
	})
}

// After a loss the address that worked is pinged every LostRecheck, so a
// path that comes back is used again within about LostRecheck (the
// failback target is 2 s), whatever the backoff of full attempts.
func TestFailback(t *testing.T) {
	for _, outage := range []time.Duration{10 * time.Second, 45 * time.Second, 100 * time.Second} {
		t.Run(fmt.Sprint(outage), func(t *testing.T) {
			w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATCone)
			w.up[stunA] = true
			w.run(time.Minute)
			w.cut(stunA)
			w.run(outage)
			w.wantPath(vocab.PathRelay, netip.AddrPort{})
			if d := w.failback(stunA); d > LostRecheck+20*time.Millisecond {
				t.Fatalf("failback took %v", d)
			} else {
				t.Logf("failback after %v", d)
			}
		})
	}
}

// Full attempts back off: after each failed attempt (AttemptRounds rounds
// of pings, ProbeInterval apart) the wait doubles from RetryMin to RetryMax.
func TestBackoffSchedule(t *testing.T) {
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}, {Addr: hostA, Kind: vocab.EndpointHost}}, vocab.NATConePortRestricted, vocab.NATSymmetric)
	w.run(5 * time.Minute)
	attempt := AttemptRounds * ProbeInterval
	var want []time.Duration
	at, wait := time.Duration(0), RetryMin
	for at <= 5*time.Minute {
		want = append(want, at)
		at += attempt + wait
		wait = min(2*wait, RetryMax)
	}
	var got []time.Duration
	for _, c := range w.cmms {
		got = append(got, c.Sub(t0))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("attempts at %v\nwant         %v", got, want)
	}
	// Each attempt pings each candidate AttemptRounds times.
	if n, want := w.pingsTo(stunA, t0), AttemptRounds*len(want); n != want {
		t.Fatalf("%d pings to %v, want %d", n, stunA, want)
	}
	st := w.p.Status(t0.Add(100 * time.Second))
	if !strings.HasPrefix(st.Reason, "relay: ") || st.Path != vocab.PathRelay {
		t.Fatalf("status %+v", st)
	}

	// Waiting between attempts: the reason says when the next one is.
	w2 := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}, {Addr: hostA, Kind: vocab.EndpointHost}, {Addr: cfgA, Kind: vocab.EndpointConfigured}}, vocab.NATCone, vocab.NATSymmetric)
	w2.run(3*attempt + RetryMin + 2*RetryMin + 1*time.Second) // third wait (4s), 1s into it
	st = w2.p.Status(w2.now)
	if st.Reason != "relay: no answer from 3 candidates (peer behind symmetric NAT), retry in 3s" {
		t.Fatalf("reason %q", st.Reason)
	}
	if !st.NextAttempt.Equal(w2.now.Add(3 * time.Second)) {
		t.Fatalf("NextAttempt %v", st.NextAttempt.Sub(w2.now))
	}

	// A path that appears long after the last loss (no last good address)
	// is found by the next attempt: within RetryMax plus one attempt.
	w.up[stunA] = true
	back := w.now
	for w.path() != vocab.PathDirect {
		w.run(100 * time.Millisecond)
		if w.now.Sub(back) > RetryMax+attempt {
			t.Fatalf("no direct path %v after it appeared", w.now.Sub(back))
		}
	}
	// The backoff resets on success.
	if w.p.att.backoff != RetryMin || w.p.att.failed != 0 {
		t.Fatalf("backoff %v failed %d after success", w.p.att.backoff, w.p.att.failed)
	}
}

// Pruning by NAT types.
func TestPruning(t *testing.T) {
	all := []Candidate{{Addr: hostA, Kind: vocab.EndpointHost}, {Addr: stunA, Kind: vocab.EndpointSTUN}}
	for _, tc := range []struct {
		name          string
		cands         []Candidate
		local, remote vocab.NATType
		want          []netip.AddrPort // probed
		reason        string           // Status reason, if nothing is probed
	}{
		{"symmetric both", all, vocab.NATSymmetric, vocab.NATSymmetric, nil, "relay: both sides symmetric NAT"},
		{"udp blocked here", all, vocab.NATUDPBlocked, vocab.NATCone, nil, "relay: UDP blocked on this node"},
		{"udp blocked there", all, vocab.NATCone, vocab.NATUDPBlocked, nil, "relay: UDP blocked at peer"},
		{"udp blocked both", all, vocab.NATUDPBlocked, vocab.NATUDPBlocked, nil, "relay: both sides have UDP blocked"},
		{"symmetric here, cone there", all, vocab.NATSymmetric, vocab.NATConePortRestricted, []netip.AddrPort{hostA, stunA}, ""},
		{"cone here, symmetric there", all, vocab.NATConeRestricted, vocab.NATSymmetric, []netip.AddrPort{hostA, stunA}, ""},
		{"unknown", all, vocab.NATUnknown, "", []netip.AddrPort{hostA, stunA}, ""},
		{"configured always", append([]Candidate{{Addr: cfgA, Kind: vocab.EndpointConfigured}}, all...), vocab.NATSymmetric, vocab.NATSymmetric, []netip.AddrPort{cfgA}, ""},
		{"configured even udp-blocked", append([]Candidate{{Addr: cfgA, Kind: vocab.EndpointConfigured}}, all...), vocab.NATUDPBlocked, vocab.NATCone, []netip.AddrPort{cfgA}, ""},
		{"same LAN host always", []Candidate{{Addr: hostA, Kind: vocab.EndpointHost, SameLAN: true}, {Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATSymmetric, vocab.NATSymmetric, []netip.AddrPort{hostA}, ""},
		{"open peer always", all, vocab.NATUDPBlocked, vocab.NATOpen, []netip.AddrPort{hostA, stunA}, ""},
		{"no candidates", nil, vocab.NATCone, vocab.NATCone, nil, "relay: no direct candidates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.cands, tc.local, tc.remote)
			w.run(10 * time.Minute)
			probed := map[netip.AddrPort]bool{}
			for _, p := range w.pings {
				probed[p.to] = true
			}
			if len(probed) != len(tc.want) {
				t.Fatalf("probed %v, want %v", probed, tc.want)
			}
			for _, a := range tc.want {
				if !probed[a] {
					t.Fatalf("probed %v, want %v", probed, tc.want)
				}
			}
			if len(tc.want) == 0 {
				if len(w.cmms) != 0 {
					t.Fatalf("%d CallMeMaybes with nothing to try", len(w.cmms))
				}
				st := w.p.Status(w.now)
				if st.Reason != tc.reason || st.Path != vocab.PathRelay || !st.NextAttempt.IsZero() {
					t.Fatalf("status %+v, want reason %q", st, tc.reason)
				}
			}
		})
	}
}

func TestMarkSameLAN(t *testing.T) {
	c := MarkSameLAN([]Candidate{
		{Addr: hostA, Kind: vocab.EndpointHost},
		{Addr: netip.MustParseAddrPort("10.1.0.2:51820"), Kind: vocab.EndpointHost},
		{Addr: netip.MustParseAddrPort("10.0.0.9:51820"), Kind: vocab.EndpointSTUN},
	}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")})
	if !c[0].SameLAN || c[1].SameLAN || c[2].SameLAN {
		t.Fatalf("%+v", c)
	}
}

// A CallMeMaybe makes the next tick ping its addresses at once, even while
// waiting between attempts, and never echoes a CallMeMaybe back.
func TestCallMeMaybeImmediatePings(t *testing.T) {
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATConePortRestricted, vocab.NATConePortRestricted)
	w.run(AttemptRounds*ProbeInterval + 500*time.Millisecond) // first attempt failed, waiting
	if w.p.att.on {
		t.Fatal("still attempting")
	}
	cmms := len(w.cmms)
	x := netip.MustParseAddrPort("198.18.0.9:1000")
	w.p.OnCallMeMaybe([]netip.AddrPort{stunA, x, {}, netip.MustParseAddrPort("[::ffff:198.18.0.10]:1000")}, w.now)
	a := w.tick()
	got := map[netip.AddrPort]bool{}
	for _, p := range a.Pings {
		got[p.To] = true
	}
	if len(a.Pings) != 3 || !got[stunA] || !got[x] || !got[netip.MustParseAddrPort("198.18.0.10:1000")] {
		t.Fatalf("pings %+v", a.Pings)
	}
	if a.CallMeMaybe || len(w.cmms) != cmms {
		t.Fatal("CallMeMaybe echoed")
	}
	// The answer from one of them makes the path direct at once.
	w.up[x] = true
	w.inflight = append(w.inflight, flight{w.now.Add(time.Millisecond), x, a.Pings[1].TxID})
	w.run(2 * time.Millisecond)
	w.wantPath(vocab.PathDirect, x)

	// The confirmed address is not pinged again because the peer asked.
	w.p.OnCallMeMaybe([]netip.AddrPort{x}, w.now)
	if a := w.tick(); len(a.Pings) != 0 {
		t.Fatalf("confirmed address pinged again: %+v", a.Pings)
	}
	// A flood of CallMeMaybes costs at most one ping per PingSpacing.
	before := w.pingsTo(stunA, t0)
	for range 50 {
		w.p.OnCallMeMaybe([]netip.AddrPort{stunA}, w.now)
		w.tick()
	}
	if n := w.pingsTo(stunA, t0) - before; n > 1 {
		t.Fatalf("%d pings for 50 CallMeMaybes at one instant", n)
	}
}

// A ping from an address we do not use is answered by the daemon and also
// pinged back, which completes a hole punch from our side.
func TestOnPingPingsBack(t *testing.T) {
	w := newWorld(t, nil, vocab.NATCone, vocab.NATSymmetric)
	w.run(time.Second)
	x := netip.MustParseAddrPort("198.18.0.9:3333")
	w.p.OnPing(x, w.now)
	a := w.tick()
	if len(a.Pings) != 1 || a.Pings[0].To != x {
		t.Fatalf("pings %+v", a.Pings)
	}
	w.up[x] = true
	w.inflight = append(w.inflight, flight{w.now.Add(time.Millisecond), x, a.Pings[0].TxID})
	w.run(2 * time.Millisecond)
	w.wantPath(vocab.PathDirect, x)
	// Its heartbeat pings from the confirmed address are not pinged back.
	w.p.OnPing(x, w.now)
	if a := w.tick(); len(a.Pings) != 0 {
		t.Fatalf("pinged back the confirmed address: %+v", a.Pings)
	}
}

// Authenticated WireGuard traffic from a new source after a NAT rebind makes
// that source the direct address.
func TestDirectRecvRebinding(t *testing.T) {
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATCone)
	w.up[stunA] = true
	w.run(30 * time.Second)
	w.wantPath(vocab.PathDirect, stunA)

	// A report older than the last confirmation does not switch.
	w.p.OnDirectRecv(newA, w.now.Add(-10*time.Second))
	w.wantPath(vocab.PathDirect, stunA)

	w.cut(stunA) // the old mapping is gone
	w.up[newA] = true
	w.p.OnDirectRecv(newA, w.now)
	w.wantPath(vocab.PathDirect, newA)
	if st := w.p.Status(w.now); st.Reason != "direct: traffic from 198.18.0.5:40001" || st.Addr != newA {
		t.Fatalf("status %+v", st)
	}
	w.run(5 * time.Minute)
	w.wantPath(vocab.PathDirect, newA)
	if w.everBoth || w.everRelayAfterDirect {
		t.Fatal("rebinding went through the relay")
	}
	if st := w.p.Status(w.now); st.Changes != 2 {
		t.Fatalf("changes %d, want 2", st.Changes)
	}

	// Traffic arriving directly confirms a path from nothing, too.
	p := NewPeer("c", t0)
	p.OnDirectRecv(netip.MustParseAddrPort("[::ffff:198.18.0.7]:51820"), t0)
	if d, r := p.Send(t0); d != netip.MustParseAddrPort("198.18.0.7:51820") || r {
		t.Fatalf("Send %v %v", d, r)
	}
	if d, r := p.Send(t0.Add(TrustDirect)); !d.IsValid() || !r {
		t.Fatalf("after TrustDirect without more traffic: %v %v, want both", d, r)
	}
}

// When several addresses answer, the best is used, with hysteresis.
func TestBestAddressHysteresis(t *testing.T) {
	for _, tc := range []struct {
		name           string
		rttStun        time.Duration
		rttHost        time.Duration
		want           netip.AddrPort
		hostNotSameLAN bool
	}{
		{"host clearly faster", 20 * time.Millisecond, 1 * time.Millisecond, hostA, false},
		{"stun clearly faster", 2 * time.Millisecond, 20 * time.Millisecond, stunA, false},
		{"similar: better kind wins", 1 * time.Millisecond, 1100 * time.Microsecond, hostA, false},
		{"similar on a LAN", 300 * time.Microsecond, 100 * time.Microsecond, hostA, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}, {Addr: hostA, Kind: vocab.EndpointHost, SameLAN: !tc.hostNotSameLAN}}, vocab.NATCone, vocab.NATCone)
			w.up[stunA], w.up[hostA] = true, true
			w.rtt[stunA], w.rtt[hostA] = tc.rttStun, tc.rttHost
			w.run(5 * time.Minute)
			w.wantPath(vocab.PathDirect, tc.want)
			if st := w.p.Status(w.now); st.Changes > 2 {
				t.Fatalf("%d changes", st.Changes)
			}
		})
	}

	// Two addresses of the same kind within 30% of each other: the first
	// confirmed stays, through many upgrade rounds.
	a2 := netip.MustParseAddrPort("198.18.0.6:51820")
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}, {Addr: a2, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATCone)
	w.up[stunA], w.up[a2] = true, true
	w.rtt[stunA], w.rtt[a2] = 10*time.Millisecond, 8*time.Millisecond
	w.run(30 * time.Minute)
	w.wantPath(vocab.PathDirect, a2) // the first pong wins (a2 answers first)...
	w.rtt[stunA] = 7 * time.Millisecond
	w.run(30 * time.Minute) // ... and stunA, 12% faster now, does not take over
	w.wantPath(vocab.PathDirect, a2)
	if st := w.p.Status(w.now); st.Changes != 1 {
		t.Fatalf("%d changes", st.Changes)
	}
	w.rtt[stunA] = 2 * time.Millisecond // clearly faster: it does
	w.run(UpgradeInterval + time.Second)
	w.wantPath(vocab.PathDirect, stunA)
}

// When the active address fails while another answered recently, that one
// takes over at once, without waiting for the relay fallback.
func TestFailoverToOtherConfirmedAddress(t *testing.T) {
	a2 := netip.MustParseAddrPort("198.18.0.6:51820")
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}, {Addr: a2, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATCone)
	w.up[stunA], w.up[a2] = true, true
	w.rtt[stunA], w.rtt[a2] = 10*time.Millisecond, 9*time.Millisecond
	w.sendEvery = 50 * time.Millisecond
	w.run(UpgradeInterval + 20*time.Millisecond) // just after an upgrade round answered
	w.wantPath(vocab.PathDirect, a2)
	w.cut(a2)
	for w.path() != vocab.PathDirect || w.p.active != stunA {
		if w.path() == vocab.PathRelay {
			t.Fatal("fell back to the relay")
		}
		w.run(10 * time.Millisecond)
	}
	w.run(time.Minute)
	w.wantPath(vocab.PathDirect, stunA)
}

// New candidates while waiting start an attempt at once, with the backoff
// reset; the same candidates again change nothing.
func TestSetCandidatesChange(t *testing.T) {
	c := []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}
	w := newWorld(t, c, vocab.NATCone, vocab.NATCone)
	w.run(2 * time.Minute)
	if w.p.att.backoff <= RetryMin {
		t.Fatal("no backoff after failures")
	}
	n := len(w.cmms)
	w.p.SetCandidates(c, vocab.NATCone, vocab.NATCone, w.now)
	w.next = w.now // the daemon ticks after any change
	w.run(time.Millisecond)
	if len(w.cmms) != n {
		t.Fatal("same candidates started an attempt")
	}
	w.p.SetCandidates(append(c, Candidate{Addr: cfgA, Kind: vocab.EndpointConfigured}), vocab.NATCone, vocab.NATCone, w.now)
	w.up[cfgA] = true
	w.next = w.now
	w.run(2 * time.Millisecond)
	if len(w.cmms) != n+1 {
		t.Fatal("new candidates did not start an attempt")
	}
	w.wantPath(vocab.PathDirect, cfgA)

	// While direct, the address in use survives its removal from MeshNode.
	w.p.SetCandidates(c, vocab.NATCone, vocab.NATCone, w.now)
	w.run(time.Minute)
	w.wantPath(vocab.PathDirect, cfgA)
}

// Memory stays bounded whatever the peer sends.
func TestBounds(t *testing.T) {
	p := NewPeer("b", t0)
	var many []netip.AddrPort
	for i := range 1000 {
		many = append(many, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 1000))
	}
	now := t0
	for i := 0; i < len(many); i += 10 {
		p.OnCallMeMaybe(many[i:i+10], now)
		p.OnPing(many[i], now)
		p.Tick(now)
		now = now.Add(time.Second)
	}
	if len(p.cands) > MaxLearned {
		t.Fatalf("%d candidates", len(p.cands))
	}
	if len(p.pings) > maxOutstanding {
		t.Fatalf("%d outstanding pings", len(p.pings))
	}
	var cands []Candidate
	for _, a := range many {
		cands = append(cands, Candidate{Addr: a, Kind: vocab.EndpointSTUN})
	}
	p.SetCandidates(cands, vocab.NATCone, vocab.NATCone, now)
	if len(p.cands) > MaxCandidates+MaxLearned {
		t.Fatalf("%d candidates", len(p.cands))
	}
	// Many addresses pinged in quick succession, none answering: the
	// outstanding pings stay bounded too. (With traffic, so that attempts
	// ping the published candidates as well: idle, only the CallMeMaybes'
	// addresses would be pinged.)
	for i := range 5 {
		p.OnActivity(now)
		p.OnCallMeMaybe(many[i*16:i*16+16], now)
		p.Tick(now)
		now = now.Add(time.Second)
	}
	if len(p.pings) != maxOutstanding {
		t.Fatalf("%d outstanding pings, want the bound %d", len(p.pings), maxOutstanding)
	}
	// Learnt addresses are forgotten after ForgetAfter.
	p.SetCandidates(nil, vocab.NATCone, vocab.NATCone, now)
	p.Tick(now.Add(ForgetAfter + time.Second))
	if len(p.cands) != 0 {
		t.Fatalf("%d candidates after ForgetAfter", len(p.cands))
	}
}

// Once a path is confirmed, nothing goes through the relay as well.
func TestNoDuplicateSendsWhenConfirmed(t *testing.T) {
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}, {Addr: hostA, Kind: vocab.EndpointHost}}, vocab.NATCone, vocab.NATCone)
	w.up[stunA] = true
	w.run(10 * time.Millisecond)
	w.wantPath(vocab.PathDirect, stunA)
	for range 6000 {
		w.run(10 * time.Millisecond)
		if d, r := w.p.Send(w.now); d != stunA || r {
			t.Fatalf("at %v: Send %v %v", w.now.Sub(t0), d, r)
		}
	}
}

// OnDirectSend says when it armed loss detection: once per confirmation,
// not by a reply to the traffic that confirmed (within ReplyWindow); the
// liveness ping comes SuspectAfter after that first unanswered send.
func TestOnDirectSendArms(t *testing.T) {
	p := NewPeer("b", t0)
	if p.OnDirectSend(t0) {
		t.Fatal("armed with no direct path")
	}
	p.OnDirectRecv(stunA, t0)
	if p.OnDirectSend(t0) {
		t.Fatal("armed by a send no later than the confirmation")
	}
	if p.OnDirectSend(t0.Add(ReplyWindow)) {
		t.Fatal("armed by a reply to the traffic that confirmed")
	}
	sent := t0.Add(ReplyWindow + time.Millisecond)
	if !p.OnDirectSend(sent) {
		t.Fatal("first send after the confirmation did not arm")
	}
	if p.OnDirectSend(sent.Add(time.Millisecond)) {
		t.Fatal("armed twice")
	}
	suspect := sent.Add(SuspectAfter)
	if a := p.Tick(sent.Add(time.Millisecond)); !a.Next.Equal(suspect) {
		t.Fatalf("Next %v, want SuspectAfter after the first unanswered send", a.Next.Sub(t0))
	}
	a := p.Tick(suspect)
	if len(a.Pings) != 1 || a.Pings[0].To != stunA || !a.Next.Equal(suspect.Add(LivenessWait)) {
		t.Fatalf("liveness: %+v", a)
	}
	if d, r := p.Send(suspect.Add(LivenessWait)); d != stunA || !r {
		t.Fatalf("unanswered liveness ping: Send %v %v, want both", d, r)
	}
	p.OnPong(stunA, a.Pings[0].TxID, suspect.Add(LivenessWait+time.Millisecond))
	if d, r := p.Send(suspect.Add(LivenessWait + time.Millisecond)); d != stunA || r {
		t.Fatalf("late pong: Send %v %v, want direct", d, r)
	}
}

// A request once a second answered within SuspectAfter (a health check, a
// ping) keeps the path confirmed by itself: it costs no liveness ping,
// only the heartbeat while trust runs out, and none of them doubts it.
func TestAnsweredRequestsCostNoLivenessPing(t *testing.T) {
	p := NewPeer("b", t0)
	p.OnDirectRecv(stunA, t0)
	pings := 0
	now := t0
	for range 30 {
		now = now.Add(time.Second)
		p.OnDirectSend(now)
		pings += len(p.Tick(now).Pings)
		answer := now.Add(50 * time.Millisecond)
		pings += len(p.Tick(answer).Pings)
		p.OnDirectRecv(stunA, answer)
		pings += len(p.Tick(answer.Add(300 * time.Millisecond)).Pings)
		if d, r := p.Send(answer.Add(300 * time.Millisecond)); d != stunA || r {
			t.Fatalf("at %v: Send %v %v, want direct only", now.Sub(t0), d, r)
		}
	}
	if pings != 0 {
		t.Errorf("%d pings over 30 answered requests, want none (traffic confirms the path)", pings)
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		400 * time.Microsecond:  "0.4ms",
		time.Millisecond:        "1ms",
		8 * time.Second:         "8s",
		35 * time.Millisecond:   "35ms",
		1200 * time.Millisecond: "1.2s",
		12 * time.Second:        "12s",
		3 * time.Minute:         "3m0s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}

// clone deep-copies a Peer, to compare it after calls that must not change
// it.
func clone(p *Peer) *Peer {
	c := *p
	c.cands = nil
	for _, x := range p.cands {
		y := *x
		c.cands = append(c.cands, &y)
	}
	c.immediate = slices.Clone(p.immediate)
	c.pings = maps.Clone(p.pings)
	return &c
}

// Status only reads: looking at a peer, however often and whenever (here
// at instants where a change is pending, between ticks), changes nothing,
// not even the change count.
func TestStatusReadOnly(t *testing.T) {
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}, {Addr: hostA, Kind: vocab.EndpointHost}}, vocab.NATCone, vocab.NATCone)
	w.up[stunA] = true
	look := func() {
		t.Helper()
		before := clone(w.p)
		for _, d := range []time.Duration{0, time.Millisecond, TrustDirect, TrustDirect + FallbackAfter, time.Hour} {
			w.p.Status(w.now.Add(d))
			w.p.Path(w.now.Add(d))
		}
		if !reflect.DeepEqual(before, w.p) {
			t.Fatalf("at %v: Status changed the peer", w.now.Sub(t0))
		}
	}
	look()
	w.run(time.Second)
	look()
	w.cut(stunA)
	w.run(TrustDirect + time.Second)
	look()
	w.run(time.Minute)
	look()
	// A pending change shows in Changes without being recorded twice.
	st := w.p.Status(w.now)
	if st2 := w.p.Status(w.now); st2.Changes != st.Changes {
		t.Fatalf("changes %d then %d", st.Changes, st2.Changes)
	}
}

// Packets that merely look like the peer's WireGuard traffic never confirm
// a path: while a spoofer sends them from the peer's address (reported as
// hints every 100 ms), a path that went dead still falls back to the relay
// on the same schedule as without them, and the hints only cause pings.
func TestHintsNeverConfirm(t *testing.T) {
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATCone)
	w.up[stunA] = true
	w.run(time.Minute)
	w.wantPath(vocab.PathDirect, stunA)
	w.cut(stunA)
	expire := w.p.Status(w.now).LastPong.Add(TrustDirect)
	for end := expire.Add(FallbackAfter + time.Second); w.now.Before(end); {
		w.p.OnDirectHint(stunA, w.now)
		w.p.OnDirectHint(newA, w.now) // unknown: ignored
		w.run(100 * time.Millisecond)
	}
	w.wantPath(vocab.PathRelay, netip.AddrPort{})
	if n := w.pingsTo(newA, t0); n != 0 {
		t.Fatalf("%d pings to an address only spoofed packets came from", n)
	}
	if n := w.pingsTo(stunA, expire.Add(-TrustDirect)); n > int((TrustDirect+FallbackAfter+time.Second)/HeartbeatRetry)+1 {
		t.Fatalf("%d pings to the hinted address: not bounded by HeartbeatRetry", n)
	}

	// A hint about the known address, once the path is back, gets it pinged
	// at once rather than at the next retry; the pong confirms it.
	w.up[stunA] = true
	w.run(LostRecheck / 2) // away from the periodic pings to the lost address
	w.p.OnDirectHint(stunA, w.now)
	a := w.tick()
	if len(a.Pings) == 0 || a.Pings[len(a.Pings)-1].To != stunA {
		t.Fatalf("hint did not ping %v: %+v", stunA, a.Pings)
	}
	w.run(10 * time.Millisecond)
	w.wantPath(vocab.PathDirect, stunA)
}

// As the daemon reports them: a step sees the send and the answer together,
// up to a loop period (250 ms, more than SuspectAfter) after both, and the
// proof of the answer is dated back at its arrival (the Bind's stamp), not
// at the step. Sparse traffic both ways then keeps the path confirmed with
// no liveness ping and no heartbeat for a minute (dated at the daemon's
// read before, a second earlier, a proof came before the send and answered
// nothing: a ping a second); when the answers stop
// (the path is cut), the first unanswered send is pinged SuspectAfter
// after it, and packets go both ways LivenessWait later.
func TestLateReportedAnswersCostNoLivenessPing(t *testing.T) {
	p := NewPeer("b", t0)
	p.OnDirectRecv(stunA, t0)
	p.Tick(t0) // the first upgrade round
	pings := 0
	now := t0
	for i := range 60 {
		send := t0.Add(time.Duration(i+1) * time.Second)
		answer := send.Add(3 * time.Millisecond)
		// Steps at 0.24 s past the send, as if the loop slept a period.
		step := send.Add(240 * time.Millisecond)
		pings += len(p.Tick(send.Add(-10 * time.Millisecond)).Pings)
		p.OnDirectSend(send)
		p.OnDirectRecv(stunA, answer)
		now = step
		pings += len(p.Tick(now).Pings)
		if d, r := p.Send(now); d != stunA || r {
			t.Fatalf("at %v: Send %v %v, want direct only", now.Sub(t0), d, r)
		}
	}
	// The upgrade round, once an UpgradeInterval, measures the RTT (and
	// looks for a better path); nothing else pings.
	if pings > 1 {
		t.Errorf("%d pings over 60 s of answered requests reported late, want only the upgrade round", pings)
	}

	// The cut: a send, no answer.
	send := now.Add(760 * time.Millisecond)
	if !p.OnDirectSend(send) {
		t.Fatal("the first unanswered send did not arm loss detection")
	}
	a := p.Tick(send.Add(SuspectAfter - time.Millisecond))
	if len(a.Pings) != 0 || !a.Next.Equal(send.Add(SuspectAfter)) {
		t.Fatalf("before SuspectAfter: %+v", a)
	}
	if a = p.Tick(send.Add(SuspectAfter)); len(a.Pings) != 1 || a.Pings[0].To != stunA {
		t.Fatalf("SuspectAfter after the unanswered send: %+v, want a liveness ping", a)
	}
	if d, r := p.Send(send.Add(SuspectAfter + LivenessWait)); d != stunA || !r {
		t.Fatalf("unanswered liveness ping: Send %v %v, want both paths", d, r)
	}
}

// The side that only answers: a request a second arrives, and its answer
// leaves a few milliseconds later. Nothing answers the answer until the
// next request, so were it an unanswered send it would cost a liveness
// ping a second; within ReplyWindow of the proven request it is a reply,
// and costs none. A send of its own past the window still arms (pinged
// SuspectAfter after it); after a pong, which nothing replies to, the
// first send arms.
func TestRepliesCostNoLivenessPing(t *testing.T) {
	p := NewPeer("b", t0)
	p.OnDirectRecv(stunA, t0)
	p.Tick(t0) // the first upgrade round
	pings := 0
	var now time.Time
	for i := range 59 {
		req := t0.Add(time.Duration(i+1) * time.Second)
		step := req.Add(240 * time.Millisecond) // the daemon's step, later
		p.OnDirectSend(req.Add(2 * time.Millisecond))
		p.OnDirectRecv(stunA, req) // proven by the read in that step
		now = step
		pings += len(p.Tick(now).Pings)
	}
	if pings != 0 {
		t.Errorf("%d pings over a minute of answering a request a second, want none", pings)
	}

	own := now.Add(100 * time.Millisecond)
	if !p.OnDirectSend(own) {
		t.Fatal("a send of its own did not arm")
	}
	if a := p.Tick(own.Add(SuspectAfter)); len(a.Pings) != 1 {
		t.Fatalf("a send of its own, unanswered for SuspectAfter: %+v, want a liveness ping", a)
	}

	q := NewPeer("c", t0)
	q.SetCandidates([]Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATCone, t0)
	a := q.Tick(t0)
	if len(a.Pings) == 0 {
		t.Fatal("no ping to start with")
	}
	q.OnPong(a.Pings[0].To, a.Pings[0].TxID, t0.Add(time.Millisecond))
	if !q.OnDirectSend(t0.Add(2 * time.Millisecond)) {
		t.Fatal("the first send after a pong did not arm: nothing replies to a pong")
	}
}

// A slow pong stretches the liveness wait (2 RTT) only while it is recent:
// one measured long ago, with traffic confirming the path since, leaves
// LivenessWait.
func TestLivenessWaitForgetsOldRTT(t *testing.T) {
	p := NewPeer("b", t0)
	p.SetCandidates([]Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATCone, vocab.NATCone, t0)
	a := p.Tick(t0)
	if len(a.Pings) == 0 {
		t.Fatal("no ping to start with")
	}
	slow := 200 * time.Millisecond
	p.OnPong(stunA, a.Pings[0].TxID, t0.Add(slow))
	wait := func(at time.Time) time.Duration {
		t.Helper()
		p.OnDirectRecv(stunA, at)
		send := at.Add(ReplyWindow + time.Millisecond)
		p.OnDirectSend(send)
		a := p.Tick(send.Add(SuspectAfter))
		if len(a.Pings) == 0 {
			t.Fatalf("at %v: no liveness ping", at.Sub(t0))
		}
		return a.Next.Sub(send.Add(SuspectAfter))
	}
	if w := wait(t0.Add(time.Second)); w != 2*slow {
		t.Fatalf("a second after a %v pong: liveness wait %v, want %v", slow, w, 2*slow)
	}
	// A pong answers that ping in time; the path then lives on traffic.
	if w := wait(t0.Add(RTTRecent + 2*time.Second)); w != LivenessWait {
		t.Fatalf("%v after the slow pong: liveness wait %v, want LivenessWait", RTTRecent+2*time.Second, w)
	}
}

// A cut found by an unanswered liveness ping stays found when the proof of
// traffic from before the ping is reported after it (the daemon dates
// traffic's proof at its arrival, and reads the device's counters only now
// and then): that proof confirms nothing since the doubt began, so the
// ping's deadline holds. A proof dated after the ping went out clears it.
func TestProofFromBeforeTheDoubtKeepsIt(t *testing.T) {
	p := NewPeer("b", t0)
	p.OnDirectRecv(stunA, t0)
	p.Tick(t0) // the first upgrade round
	send := t0.Add(time.Second)
	if !p.OnDirectSend(send) {
		t.Fatal("the first unanswered send did not arm loss detection")
	}
	pinged := send.Add(SuspectAfter)
	a := p.Tick(pinged)
	if len(a.Pings) != 1 || a.Pings[0].To != stunA {
		t.Fatalf("SuspectAfter after the unanswered send: %+v, want a liveness ping", a)
	}
	// The last packet before the cut arrived just before the ping was
	// sent; its proof comes a read later.
	p.OnDirectRecv(stunA, pinged.Add(-10*time.Millisecond))
	if d, r := p.Send(pinged.Add(LivenessWait)); d != stunA || !r {
		t.Fatalf("after a proof from before the ping: Send %v %v, want both paths at the ping's deadline", d, r)
	}

	// Traffic that arrived after the ping went out does clear the doubt.
	q := NewPeer("b", t0)
	q.OnDirectRecv(stunA, t0)
	q.Tick(t0)
	q.OnDirectSend(send)
	if a := q.Tick(pinged); len(a.Pings) != 1 {
		t.Fatalf("no liveness ping: %+v", a)
	}
	q.OnDirectRecv(stunA, pinged.Add(time.Millisecond))
	if d, r := q.Send(pinged.Add(LivenessWait)); d != stunA || r {
		t.Fatalf("after a proof from after the ping: Send %v %v, want direct only", d, r)
	}
}
