package path

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wirelace/wirelace/api/vocab"
)

// newIdleWorld is a world without traffic: the peer is active for its first
// IdleTimeout only (a new peer), and the direct path at stunA is up.
func newIdleWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}}, vocab.NATConePortRestricted, vocab.NATConePortRestricted)
	w.idle = true
	w.up[stunA] = true
	w.rtt[stunA] = 20 * time.Millisecond
	return w
}

// wantSend checks where packets go now.
func (w *world) wantSend(direct netip.AddrPort, relay bool) {
	w.t.Helper()
	if d, r := w.p.Send(w.now); d != direct || r != relay {
		w.t.Fatalf("at %v: Send %v relay %v, want %v relay %v; %s", w.now.Sub(t0), d, r, direct, relay, w.p.Status(w.now).Reason)
	}
}

// A new peer is active for IdleTimeout: its direct path is found and kept
// confirmed by heartbeats. Then, with no traffic, it goes idle: no more
// pings and no more ticks (Next is zero), for hours. The address stays its
// path (on standby: packets would go both ways until it answers again),
// and nothing counts as a change.
func TestIdlePeerCostsNothing(t *testing.T) {
	w := newIdleWorld(t)
	w.run(IdleTimeout - time.Second)
	w.wantPath(vocab.PathDirect, stunA)
	if !w.p.Active(w.now) {
		t.Fatal("a new peer is not active for its first IdleTimeout")
	}
	beats := w.pingsTo(stunA, t0.Add(10*time.Second))
	if beats < 10 {
		t.Fatalf("%d heartbeats in the first minute of an active peer", beats)
	}

	w.run(2 * time.Second)
	if w.p.Active(w.now) {
		t.Fatal("still active IdleTimeout after the last traffic")
	}
	idleAt := t0.Add(IdleTimeout)
	w.run(TrustDirect) // the last heartbeat's trust runs out
	settled := w.now
	a := w.tick()
	if !a.Next.IsZero() || len(a.Pings) != 0 || a.CallMeMaybe {
		t.Fatalf("idle and settled, Tick still asks for %+v", a)
	}
	w.wantPath(vocab.PathDirect, stunA)
	w.wantSend(stunA, true)
	w.run(3 * time.Hour)
	if n := w.pingsTo(stunA, idleAt); n != 0 {
		t.Fatalf("%d pings to an idle peer", n)
	}
	if len(w.cmms) != 1 {
		t.Fatalf("%d CallMeMaybes, want the first attempt's only", len(w.cmms))
	}
	w.wantPath(vocab.PathDirect, stunA)
	w.wantSend(stunA, true)
	st := w.p.Status(w.now)
	if st.Changes != 1 || !strings.HasPrefix(st.Reason, "direct: no traffic for 3h") || !st.NextAttempt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if w.now.Sub(settled) < 3*time.Hour {
		t.Fatal("the world did not run")
	}
}

// The machine asks for a tick when the peer goes idle and when its route
// changes after that (trust running out), and not after: Send is then the
// same whenever it is asked, until an On* call.
func TestIdleNextCoversRouteChanges(t *testing.T) {
	w := newIdleWorld(t)
	w.run(IdleTimeout - 10*time.Millisecond)
	type route struct {
		direct netip.AddrPort
		relay  bool
	}
	send := func(at time.Time) route {
		d, r := w.p.Send(at)
		return route{d, r}
	}
	var ticks []time.Duration
	for range 100 {
		a := w.p.Tick(w.now)
		if a.Next.IsZero() {
			break
		}
		if !a.Next.After(w.now) {
			t.Fatalf("Next %v not after now", a.Next.Sub(w.now))
		}
		// Send may change only at the instants Next names.
		if send(a.Next.Add(-time.Nanosecond)) != send(w.now) {
			t.Fatalf("at %v: Send changes before the Next %v", w.now.Sub(t0), a.Next.Sub(t0))
		}
		w.now = a.Next
		ticks = append(ticks, w.now.Sub(t0))
	}
	settled := send(w.now)
	for _, later := range []time.Duration{time.Second, time.Minute, 24 * time.Hour} {
		if send(w.now.Add(later)) != settled {
			t.Fatalf("Next was zero, yet Send changes %v later", later)
		}
	}
	if settled != (route{stunA, true}) || len(ticks) > 4 {
		t.Fatalf("settled on %+v after ticks at %v", settled, ticks)
	}
}

// Traffic wakes an idle peer on standby: its address is pinged at once and
// a pong confirms it within an RTT. Packets go both ways only until then, the
// path never stops being direct, and no attempt (CallMeMaybe) is needed.
func TestWakeFromStandby(t *testing.T) {
	w := newIdleWorld(t)
	w.run(10 * time.Minute)
	w.wantSend(stunA, true)
	cmms := len(w.cmms)

	wake := w.now
	if !w.p.OnDirectSend(wake) && !w.p.Active(wake) {
		t.Fatal("a send did not make the peer active")
	}
	if w.p.OnActivity(wake) {
		t.Fatal("OnActivity woke a peer that was already active")
	}
	a := w.tick()
	if len(a.Pings) != 1 || a.Pings[0].To != stunA {
		t.Fatalf("woken: pings %+v, want the standby address at once", a.Pings)
	}
	w.wantPath(vocab.PathDirect, stunA)
	w.wantSend(stunA, true)
	if st := w.p.Status(w.now); !strings.HasPrefix(st.Reason, "direct: traffic resumed, checking 198.18.0.5:51820") {
		t.Fatalf("reason %q", st.Reason)
	}
	w.run(w.rtt[stunA] + time.Millisecond)
	w.wantSend(stunA, false)
	if st := w.p.Status(w.now); st.Changes != 1 || !strings.HasPrefix(st.Reason, "direct: pong from") {
		t.Fatalf("status %+v", st)
	}
	if len(w.cmms) != cmms {
		t.Fatal("a CallMeMaybe although the address answered")
	}
	// Active again: heartbeats resume while the traffic lasts.
	w.sendEvery = time.Second
	w.run(30 * time.Second)
	w.wantSend(stunA, false)
	if w.pingsTo(stunA, wake.Add(time.Second)) == 0 {
		t.Fatal("no probes while traffic flows")
	}
}

// Woken on standby with the path gone (a NAT mapping expired meanwhile): the
// check goes unanswered, so after LivenessWait (or twice the RTT) the peer
// is degraded, sending on both paths and attempting (with a CallMeMaybe),
// and after FallbackAfter more it is on the relay.
func TestWakeFromStandbyPathGone(t *testing.T) {
	w := newIdleWorld(t)
	w.run(10 * time.Minute)
	w.cut(stunA)
	cmms := len(w.cmms)
	wake := w.now
	w.p.OnActivity(wake)
	w.tick()
	check := wake.Add(max(LivenessWait, 2*w.rtt[stunA]))
	w.run(check.Add(-time.Millisecond).Sub(w.now))
	w.wantPath(vocab.PathDirect, stunA)
	w.wantSend(stunA, true)
	w.run(2 * time.Millisecond)
	w.wantPath(vocab.PathBoth, stunA)
	if len(w.cmms) != cmms+1 {
		t.Fatalf("%d CallMeMaybes after the check failed, want %d", len(w.cmms), cmms+1)
	}
	w.run(check.Add(FallbackAfter - time.Millisecond).Sub(w.now))
	w.wantPath(vocab.PathBoth, stunA)
	w.run(2 * time.Millisecond)
	w.wantPath(vocab.PathRelay, netip.AddrPort{})

	// The path comes back while the traffic goes on: failback as usual.
	w.sendEvery = 100 * time.Millisecond
	if d := w.failback(stunA); d > LostRecheck+20*time.Millisecond {
		t.Fatalf("failback took %v", d)
	}
}

// A path that failed while traffic flowed is not kept on standby: the peer
// goes idle on the relay, and traffic starts an attempt at once, whatever
// the backoff.
func TestIdleAfterLossIsRelay(t *testing.T) {
	w := newIdleWorld(t)
	w.run(20 * time.Second)
	w.wantPath(vocab.PathDirect, stunA)
	w.cut(stunA)
	w.run(IdleTimeout)
	w.wantPath(vocab.PathRelay, netip.AddrPort{})
	w.run(30 * time.Minute)
	if w.p.Active(w.now) {
		t.Fatal("active without traffic")
	}
	w.wantPath(vocab.PathRelay, netip.AddrPort{})
	idle := w.now.Add(-29 * time.Minute)
	if n := len(w.pings) - w.pingsTo(stunA, t0) + w.pingsTo(stunA, idle); n != 0 {
		t.Fatalf("%d pings while idle", n)
	}
	if st := w.p.Status(w.now); !strings.HasPrefix(st.Reason, "relay: no traffic for 3") || !st.NextAttempt.IsZero() {
		t.Fatalf("status %+v", st)
	}

	cmms := len(w.cmms)
	w.up[stunA] = true
	if !w.p.OnActivity(w.now) {
		t.Fatal("traffic did not wake the idle peer")
	}
	a := w.tick()
	if !a.CallMeMaybe || len(a.Pings) == 0 || len(w.cmms) != cmms+1 {
		t.Fatalf("woken on the relay: %+v, want an attempt at once", a)
	}
	w.run(w.rtt[stunA] + time.Millisecond)
	w.wantPath(vocab.PathDirect, stunA)
}

// A peer that can never be reached directly costs nothing once idle either:
// its attempts stop (and are not counted as failures).
func TestIdleStopsAttempts(t *testing.T) {
	w := newWorld(t, []Candidate{{Addr: stunA, Kind: vocab.EndpointSTUN}, {Addr: hostA, Kind: vocab.EndpointHost}}, vocab.NATConePortRestricted, vocab.NATSymmetric)
	w.idle = true
	w.run(IdleTimeout)
	n := len(w.pings)
	if n == 0 || len(w.cmms) == 0 {
		t.Fatal("no attempts while active")
	}
	failed := w.p.att.failed
	w.run(time.Hour)
	for _, p := range w.pings {
		if p.at.After(t0.Add(IdleTimeout)) {
			t.Fatalf("ping at %v, after going idle", p.at.Sub(t0))
		}
	}
	if w.p.att.failed > failed+1 {
		t.Fatalf("failures counted while idle: %d → %d", failed, w.p.att.failed)
	}
	if a := w.tick(); !a.Next.IsZero() {
		t.Fatalf("idle relay peer asks for a tick at %v", a.Next.Sub(w.now))
	}
}

// Probes are not traffic: an idle peer pings back, once, the addresses a
// peer's ping or CallMeMaybe names (the other side may have traffic and be
// hole punching), but stays idle, so two nodes probing each other cannot
// keep each other active.
func TestIdleAnswersProbesButStaysIdle(t *testing.T) {
	w := newIdleWorld(t)
	w.run(10 * time.Minute)
	since := w.now
	x := netip.MustParseAddrPort("198.18.0.9:1000")
	w.p.OnCallMeMaybe([]netip.AddrPort{x, stunA}, w.now)
	a := w.tick()
	if len(a.Pings) != 2 || a.CallMeMaybe {
		t.Fatalf("CallMeMaybe to an idle peer: %+v, want its two addresses pinged", a)
	}
	w.p.OnPing(x, w.now.Add(time.Second))
	w.now = w.now.Add(time.Second)
	if a := w.tick(); len(a.Pings) != 1 || a.Pings[0].To != x {
		t.Fatalf("ping to an idle peer: %+v, want one ping back", a)
	}
	w.run(time.Hour)
	if w.p.Active(w.now) {
		t.Fatal("probes made the peer active")
	}
	var after []sent
	for _, p := range w.pings {
		if p.at.After(t0.Add(IdleTimeout + TrustDirect)) {
			after = append(after, p)
		}
	}
	if len(after) != 3 || w.pingsTo(x, since) != 2 || w.pingsTo(stunA, since) != 1 {
		t.Fatalf("pings while idle %+v, want only the 3 the CallMeMaybe and the ping asked for", after)
	}
	if a := w.tick(); !a.Next.IsZero() {
		t.Fatalf("Next %v", a.Next.Sub(w.now))
	}
}

// Traffic more often than IdleTimeout keeps a peer active, and so probed,
// for as long as it lasts; OnActivity says when it woke the peer.
func TestActivityKeepsActive(t *testing.T) {
	p := NewPeer("b", t0)
	now := t0
	for range 20 {
		now = now.Add(IdleTimeout - time.Second)
		if p.OnActivity(now) {
			t.Fatalf("at %v: woke a peer with traffic %v ago", now.Sub(t0), IdleTimeout-time.Second)
		}
		if !p.Active(now) {
			t.Fatal("not active")
		}
	}
	now = now.Add(IdleTimeout)
	if p.Active(now) {
		t.Fatal("active IdleTimeout after the last traffic")
	}
	if p.OnActivity(now.Add(-time.Second)) {
		t.Fatal("a report of traffic before going idle woke the peer")
	}
	if !p.OnActivity(now.Add(IdleTimeout)) {
		t.Fatal("traffic did not wake the idle peer")
	}
	if p.OnActivity(now.Add(IdleTimeout)) {
		t.Fatal("woke twice")
	}
}
