package path

import (
	"net/netip"
	"time"

	"github.com/wirelace/wirelace/api/vocab"
)

// Peer is the path state of one remote node.
type Peer struct {
	name string

	cands         []*cand
	local, remote vocab.NATType
	prune         pruning // why NAT traversal is not attempted, if it is not

	// The direct path.
	active      netip.AddrPort // invalid: none
	lastConfirm time.Time      // last pong from / traffic from active
	confirmedBy confirmation   // what last confirmed it
	sentSince   bool           // OnDirectSend since lastConfirm
	unanswered  time.Time      // with sentSince: when the first such send went out
	lastSent    time.Time      // the latest OnDirectSend
	liveness    time.Time      // deadline of the unanswered liveness ping; zero: none
	doubtSince  time.Time      // with liveness: when the path came into doubt
	lastUpgrade time.Time

	// Activity (see IdleTimeout).
	lastActive time.Time // last WireGuard traffic, either way
	rechecking bool      // woken on standby: the address is being checked
	recheck    time.Time // deadline of the check's ping; zero: not sent yet

	// Looking for a direct path while there is none, or it is in doubt.
	att attempt

	// After a loss.
	lastGood netip.AddrPort
	lostAt   time.Time

	immediate []netip.AddrPort
	pings     map[[12]byte]outstanding

	lastPong time.Time
	lastRTT  time.Duration

	// Change accounting.
	lastPath vocab.Path
	lastAddr netip.AddrPort
	changes  int
}

// attempt is one search for a direct path (AttemptRounds rounds of pings to
// every eligible candidate, ProbeInterval apart, with one CallMeMaybe), and
// the backoff between searches that fail.
type attempt struct {
	on        bool // under way
	start     time.Time
	nextRound time.Time
	rounds    int  // rounds of pings sent so far
	cmmDue    bool // a CallMeMaybe is to go out at the next tick
	// next is when the next attempt may start, while none is under way.
	next    time.Time
	backoff time.Duration // the wait after the next failure
	failed  int           // attempts failed in a row
	tried   int           // candidates pinged by the last round
}

// NewPeer returns the state of a newly known peer: relay at once, direct
// attempts as soon as it has candidates.
func NewPeer(name string, now time.Time) *Peer {
	return &Peer{
		name:        name,
		att:         attempt{backoff: RetryMin, next: now},
		pings:       map[[12]byte]outstanding{},
		lastPath:    vocab.PathRelay,
		lastUpgrade: now,
		// New to this node (it just started, or the peer just joined): about
		// to be talked to, more often than not, so its direct path is looked
		// for now rather than on the first packet. One IdleTimeout per peer
		// per start.
		lastActive: now,
	}
}

// Active reports whether the peer had WireGuard traffic within IdleTimeout
// of now (or was created within it).
func (p *Peer) Active(now time.Time) bool {
	return now.Before(p.lastActive.Add(IdleTimeout))
}

// OnActivity records WireGuard traffic to or from the peer at `at` that no
// other On* method reports: what arrives through the relay, say. It returns
// true when it woke an idle peer, which must then be ticked at once.
func (p *Peer) OnActivity(at time.Time) bool { return p.noteActive(at) }

// noteActive records traffic at `at`. Waking on standby starts the check of
// the address; waking on the relay starts an attempt at once, whatever the
// backoff.
func (p *Peer) noteActive(at time.Time) bool {
	if !at.After(p.lastActive) {
		return false
	}
	woke := !p.Active(at)
	if woke {
		if p.state(at) == stateStandby {
			p.rechecking = true
			p.recheck = time.Time{}
		}
		if !p.att.on && p.att.next.After(at) {
			p.att.next = at
		}
	}
	p.lastActive = at
	return woke
}

// Name is the name given to NewPeer.
func (p *Peer) Name() string { return p.name }
