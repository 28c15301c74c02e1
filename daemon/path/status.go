package path

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/wirelace/wirelace/api/vocab"
)

// Status is a peer's path for `wirelacectl status` and the logs.
type Status struct {
	// Path is where packets go: direct, relay, or both while the direct
	// address is in doubt.
	Path vocab.Path
	// Addr is the direct address in use (zero when relay only).
	Addr netip.AddrPort
	// Reason is one line saying why, e.g.
	//	direct: pong from 198.18.0.5:51820 in 0.4ms
	//	direct+relay: 198.18.0.5:51820 unconfirmed for 5.2s, sending on both paths
	//	relay: both sides symmetric NAT
	//	relay: no answer from 3 candidates, retry in 8s
	Reason string
	// LastPong is when the last valid pong arrived (any address).
	LastPong time.Time
	// RTT is the last measured round trip to the direct address in use (or
	// to any address, when there is none).
	RTT time.Duration
	// Changes counts changes of Path or of the direct address since the peer
	// was created (relay → direct is the first).
	Changes int
	// NextAttempt is when the next direct-path attempt starts, while waiting
	// for one; zero when direct, attempting, idle (traffic starts the next
	// attempt), or nothing can be tried.
	NextAttempt time.Time
}

// Status describes the peer's path at now. It only reads the Peer, and it
// formats Reason, so it is meant for status output and for logging a change
// (see Path for a cheap look on every tick). Changes includes a change that
// happened since the last Tick, without recording it: only Tick and the On*
// methods count changes, so looking never alters what is counted.
func (p *Peer) Status(now time.Time) Status {
	path, addr := p.pathName(now)
	changes := p.changes
	if path != p.lastPath || addr != p.lastAddr {
		changes++
	}
	s := Status{Path: path, Addr: addr, LastPong: p.lastPong, RTT: p.lastRTT, Changes: changes}
	active := p.find(p.active)
	if path != vocab.PathRelay && active != nil && !active.lastPong.IsZero() {
		s.RTT = active.rtt
	}
	st := p.state(now)
	switch path {
	case vocab.PathDirect:
		switch {
		case st == stateStandby && !p.Active(now):
			s.Reason = fmt.Sprintf("direct: no traffic for %s; %s is checked again when there is, the relay also carrying it meanwhile", fmtDur(now.Sub(p.lastActive)), addr)
		case st == stateStandby:
			s.Reason = fmt.Sprintf("direct: traffic resumed, checking %s (sending on both paths meanwhile)", addr)
		case p.confirmedBy == confirmPong && !active.lastPong.IsZero():
			s.Reason = fmt.Sprintf("direct: pong from %s in %s", addr, fmtDur(active.rtt))
		default:
			s.Reason = fmt.Sprintf("direct: traffic from %s", addr)
		}
	case vocab.PathBoth:
		since := "ever"
		if !p.lastConfirm.IsZero() {
			since = fmtDur(now.Sub(p.lastConfirm))
		}
		s.Reason = fmt.Sprintf("direct+relay: %s unconfirmed for %s, sending on both paths", addr, since)
	default:
		s.Reason = p.relayReason(now)
		if !p.att.on && len(p.eligibleAddrs()) > 0 && p.Active(now) {
			s.NextAttempt = p.att.next
		}
	}
	return s
}

func (p *Peer) relayReason(now time.Time) string {
	elig := p.eligibleAddrs()
	lost := ""
	// Checked here too: an idle peer is not ticked, so may not have
	// forgotten it yet.
	if p.lastGood.IsValid() && now.Sub(p.lostAt) < ForgetAfter {
		lost = fmt.Sprintf("direct path via %s lost %s ago, ", p.lastGood, fmtDur(now.Sub(p.lostAt)))
	}
	hint := ""
	if p.remote == vocab.NATSymmetric && p.local != vocab.NATOpen {
		hint = " (peer behind symmetric NAT)"
	}
	switch {
	case len(elig) == 0 && p.prune != pruneNone:
		return "relay: " + lost + p.prune.String()
	case len(elig) == 0:
		return "relay: " + lost + "no direct candidates"
	case !p.Active(now):
		return fmt.Sprintf("relay: %sno traffic for %s; direct attempts resume when there is", lost, fmtDur(now.Sub(p.lastActive)))
	case p.att.on:
		return fmt.Sprintf("relay: %sprobing %s%s", lost, plural(len(elig), "candidate"), hint)
	case p.att.failed == 0:
		// Not attempted yet: the first attempt starts at the next tick.
		return fmt.Sprintf("relay: %sabout to probe %s", lost, plural(len(elig), "candidate"))
	}
	wait := p.att.next.Sub(now)
	if wait < 0 {
		wait = 0
	}
	return fmt.Sprintf("relay: %sno answer from %s%s, retry in %s", lost, plural(p.att.tried, "candidate"), hint, fmtDur(wait))
}

func (r pruning) String() string {
	switch r {
	case pruneBothBlocked:
		return "both sides have UDP blocked"
	case pruneLocalBlocked:
		return "UDP blocked on this node"
	case prunePeerBlocked:
		return "UDP blocked at peer"
	case pruneBothSymmetric:
		return "both sides symmetric NAT"
	}
	return ""
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// fmtDur prints a duration briefly: 0.4ms, 1ms, 35ms, 1.2s, 8s, 12s, 3m0s.
func fmtDur(d time.Duration) string {
	tenths := func(x float64) string {
		return strconv.FormatFloat(math.Round(x*10)/10, 'f', -1, 64)
	}
	switch {
	case d < 10*time.Millisecond:
		return tenths(float64(d)/float64(time.Millisecond)) + "ms"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Round(time.Millisecond)/time.Millisecond)
	case d < 10*time.Second:
		return tenths(d.Seconds()) + "s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", d.Round(time.Second)/time.Second)
	}
	return d.Round(time.Second).String()
}
