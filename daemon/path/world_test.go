package path

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wirelace/wirelace/api/vocab"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	hostA = netip.MustParseAddrPort("10.0.0.2:51820")
	stunA = netip.MustParseAddrPort("198.18.0.5:51820")
	cfgA  = netip.MustParseAddrPort("203.0.113.7:51820")
	newA  = netip.MustParseAddrPort("198.18.0.5:40001") // after a NAT rebind
)

// world is a fake network and clock around one Peer: it ticks the peer when
// asked to, answers pings to addresses that are up after their RTT, and can
// report outgoing traffic (OnDirectSend) at a fixed rate.
type world struct {
	t   *testing.T
	p   *Peer
	now time.Time

	next     time.Time
	up       map[netip.AddrPort]bool
	rtt      map[netip.AddrPort]time.Duration
	inflight []flight

	pings []sent
	cmms  []time.Time

	sendEvery time.Duration // report direct sends this often (0: never)
	lastSend  time.Time
	// idle: no traffic at all. Otherwise the peer has traffic that the
	// world does not model (through the relay, say), reported with
	// OnActivity at every event, which keeps it active: the tests that
	// use such a world are about active peers.
	idle bool

	// What Send said over time.
	everBoth, everRelayAfterDirect bool
	firstDirect                    time.Time
}

type flight struct {
	at   time.Time
	from netip.AddrPort
	tx   [12]byte
}

type sent struct {
	at time.Time
	to netip.AddrPort
}

func newWorld(t *testing.T, cands []Candidate, local, remote vocab.NATType) *world {
	t.Helper()
	w := &world{t: t, now: t0, next: t0, up: map[netip.AddrPort]bool{}, rtt: map[netip.AddrPort]time.Duration{}}
	w.p = NewPeer("peer", t0)
	w.p.SetCandidates(cands, local, remote, t0)
	return w
}

func (w *world) tick() Actions {
	w.t.Helper()
	a := w.p.Tick(w.now)
	switch {
	case a.Next.IsZero() && w.idle:
		w.next = w.now.Add(1000 * time.Hour) // nothing until an event
	case !a.Next.After(w.now):
		w.t.Fatalf("%v: Next %v not after now", w.now.Sub(t0), a.Next.Sub(t0))
	default:
		w.next = a.Next
	}
	for _, pg := range a.Pings {
		w.pings = append(w.pings, sent{w.now, pg.To})
		if w.up[pg.To] {
			rtt := w.rtt[pg.To]
			if rtt == 0 {
				rtt = time.Millisecond
			}
			w.inflight = append(w.inflight, flight{w.now.Add(rtt), pg.To, pg.TxID})
		}
	}
	if a.CallMeMaybe {
		w.cmms = append(w.cmms, w.now)
	}
	return a
}

// run advances the clock by d, processing every event on the way.
func (w *world) run(d time.Duration) {
	w.t.Helper()
	end := w.now.Add(d)
	for {
		t := w.next
		for _, f := range w.inflight {
			if f.at.Before(t) {
				t = f.at
			}
		}
		if w.sendEvery > 0 {
			if ts := w.lastSend.Add(w.sendEvery); ts.Before(t) {
				t = ts
			}
		}
		if t.After(end) {
			w.now = end
			w.observe()
			return
		}
		if t.Before(w.now) {
			t = w.now
		}
		w.now = t
		if !w.idle {
			w.p.OnActivity(w.now)
		}
		var keep []flight
		for _, f := range w.inflight {
			if !f.at.After(w.now) {
				w.p.OnPong(f.from, f.tx, w.now)
			} else {
				keep = append(keep, f)
			}
		}
		w.inflight = keep
		if w.sendEvery > 0 && !w.lastSend.Add(w.sendEvery).After(w.now) {
			w.lastSend = w.now
			if d, _ := w.p.Send(w.now); d.IsValid() {
				w.p.OnDirectSend(w.now)
			}
		}
		if !w.next.After(w.now) {
			w.tick()
		}
		w.observe()
	}
}

func (w *world) observe() {
	d, r := w.p.Send(w.now)
	switch {
	case d.IsValid() && r:
		w.everBoth = true
	case d.IsValid():
		if w.firstDirect.IsZero() {
			w.firstDirect = w.now
		}
	default:
		if !w.firstDirect.IsZero() {
			w.everRelayAfterDirect = true
		}
	}
}

// cut takes addr down, pongs in flight included.
func (w *world) cut(addr netip.AddrPort) {
	w.up[addr] = false
	var keep []flight
	for _, f := range w.inflight {
		if f.from != addr {
			keep = append(keep, f)
		}
	}
	w.inflight = keep
}

func (w *world) path() vocab.Path {
	s, _ := w.p.pathName(w.now)
	return s
}

// failback brings addr back up and returns how long the path then takes to
// be direct again.
func (w *world) failback(addr netip.AddrPort) time.Duration {
	w.t.Helper()
	w.up[addr] = true
	back := w.now
	for w.path() != vocab.PathDirect {
		w.run(10 * time.Millisecond)
	}
	return w.now.Sub(back)
}

func (w *world) pingsTo(a netip.AddrPort, since time.Time) int {
	n := 0
	for _, p := range w.pings {
		if p.to == a && !p.at.Before(since) {
			n++
		}
	}
	return n
}

func (w *world) wantPath(want vocab.Path, addr netip.AddrPort) {
	w.t.Helper()
	d, r := w.p.Send(w.now)
	got, _ := w.p.pathName(w.now)
	if got != want || (want != vocab.PathRelay && d != addr) {
		w.t.Fatalf("at %v: path %s %v (relay %v), want %s %v; %s", w.now.Sub(t0), got, d, r, want, addr, w.p.Status(w.now).Reason)
	}
}
