// Package path is the per-peer path state machine: it decides whether
// WireGuard packets for a peer go directly to one of its UDP endpoints, through
// the relay, or (while a direct path is in doubt) both, and which probes to
// send to find, confirm and keep a direct path.
//
// The package is pure: no sockets, no goroutines, no clocks. The daemon passes
// the time into every call, sends the pings and CallMeMaybes that Tick asks
// for (sealed with daemon/probe), reports what it receives (OnPong, OnPing,
// OnCallMeMaybe, OnDirectRecv, OnDirectHint, OnDirectSend) and routes
// WireGuard packets as Send says. A Peer is not safe for concurrent use; the
// daemon serialises calls.
//
// The ideas are those of Tailscale's magicsock: connectivity first (the relay
// carries traffic from the first moment), the direct path is trusted for a
// while after each pong and re-probed before that trust runs out, and when it
// stops confirming, packets go on both paths until it confirms again or the
// daemon gives up on it and retries later with backoff.
//
// States of a peer (derived from timestamps, so Send is exact at any instant,
// not only at ticks):
//
//	relay      no direct address. Attempts (AttemptRounds rounds of pings to
//	           every eligible candidate, ProbeInterval apart, plus one
//	           CallMeMaybe through the relay so the peer probes us at the same
//	           moment) alternate with waits that double from RetryMin up to
//	           RetryMax. A pong, or authenticated WireGuard traffic arriving
//	           directly (OnDirectRecv; unauthenticated traffic is only a hint
//	           to ping, OnDirectHint), moves to direct. Send: relay only.
//	direct     a confirmed address: a pong or direct traffic within the last
//	           TrustDirect. The address is pinged again RefreshBefore before its
//	           trust runs out (the heartbeat), and sooner (SuspectAfter) when we
//	           send to it and hear nothing back. Send: direct only.
//	degraded   trust ran out, or a liveness ping went unanswered for
//	           LivenessWait: a new attempt starts (with CallMeMaybe) and the
//	           address is pinged every HeartbeatRetry. Send: direct and relay
//	           (so failover loses almost nothing). A pong or direct traffic
//	           moves back to direct; FallbackAfter without one moves to relay.
//	relay after a loss: as relay, and the address that last worked is also
//	           pinged every ProbeInterval for ForgetAfter, so a path that comes
//	           back is used again within about ProbeInterval (failback), whatever
//	           the backoff of full attempts.
//
// All of the above is for an active peer: one with WireGuard traffic, either
// way and on either path, within the last IdleTimeout (a new peer counts as
// active for its first IdleTimeout). The daemon reports traffic with
// OnDirectSend, OnDirectRecv, OnDirectHint and OnActivity; probes are not
// traffic. An idle peer, as in Tailscale's magicsock, costs nothing: no
// heartbeats, no attempts, and no timers once its route is settled (Tick
// returns a zero Next), so a node with a thousand peers of which a few talk
// does the work of a few. Idle, a peer is in one of:
//
//	standby    its direct address was confirmed when it went idle (the path
//	           did not fail while traffic flowed). Path says direct, but Send
//	           says direct and relay: the NAT mappings on the way may have
//	           expired meanwhile, and the first packet after a pause is
//	           usually a WireGuard handshake, which the Bind sends only through
//	           the relay when the relay is in the route, so it arrives either
//	           way, and data packets go both ways until the address answers.
//	           Traffic wakes the peer: the address is pinged at once, and a
//	           pong within LivenessWait (or twice its RTT) makes it direct
//	           again; otherwise it is degraded, as above, from then on.
//	relay      no such address (never found, or lost while traffic flowed):
//	           relay only, no attempts; traffic starts one at once.
//
// While idle the peer still pings back, once, the addresses a peer pinging
// it or sending it a CallMeMaybe names (Tick must run after those, as after
// any On* call): hole punching needs both sides, and the other side may be
// the one with traffic.
package path

import (
	"crypto/rand"
	"github.com/wirelace/wirelace/api/vocab"
	"net/netip"
	"slices"
	"time"
)

// Timing. The values are tuned for the project's path targets (failover gap
// under 1 s while traffic flows, failback under 5 s, no flapping, no duplicate
// sends once confirmed) and for a probe cost that stays negligible with
// hundreds of peers.
const (
	// ProbeInterval is how often unconfirmed candidates are pinged while
	// looking for a direct path (the rounds of an attempt), and how often the
	// last good address is pinged after a loss. Two seconds gives a NAT hole
	// several chances within an attempt without flooding closed ones.
	ProbeInterval = 2 * time.Second
	// AttemptRounds is how many rounds of pings one attempt sends before it
	// gives up (an attempt lasts AttemptRounds*ProbeInterval). More than one
	// because the first packets of a simultaneous open are often dropped by
	// the NAT that has not seen our outbound packet yet.
	AttemptRounds = 3
	// TrustDirect is how long a pong (or authenticated WireGuard traffic
	// arriving directly) keeps the direct path confirmed. Long enough to ride
	// out a lost heartbeat or two; loss while traffic flows is caught sooner
	// by SuspectAfter.
	TrustDirect = 5 * time.Second
	// RefreshBefore: the active direct address is pinged again this long
	// before its trust expires (a heartbeat about every TrustDirect -
	// RefreshBefore = 3.5 s), so a healthy path is reconfirmed before it is
	// ever doubted; the window leaves room for HeartbeatRetry retries.
	RefreshBefore = 1500 * time.Millisecond
	// HeartbeatRetry is how soon an unanswered heartbeat is repeated, and how
	// often the direct address is pinged while degraded.
	HeartbeatRetry = 500 * time.Millisecond
	// SuspectAfter: when we have sent to the direct address (OnDirectSend)
	// and nothing has confirmed it for this long, ping it at once instead of
	// waiting for the heartbeat. Interactive traffic answers much faster than
	// this, so it only fires when the path (or the peer) went quiet.
	SuspectAfter = 400 * time.Millisecond
	// LivenessWait is the least time a liveness ping (see SuspectAfter) is
	// given to be answered (at least twice the measured RTT) before packets
	// also go through the relay. SuspectAfter + LivenessWait bounds the
	// failover gap of a busy path, well under a second.
	LivenessWait = 200 * time.Millisecond
	// FallbackAfter is how long the path may stay unconfirmed after trust
	// expired (sending on both paths meanwhile) before the relay alone is
	// used: duplicates are cheap for a few seconds, not for ever.
	FallbackAfter = 3 * time.Second
	// RetryMin is the wait between direct-path attempts after one fails; it
	// doubles after each failure ...
	RetryMin = 1 * time.Second
	// ... up to RetryMax, so peers that can never be reached directly cost
	// a few pings a minute.
	RetryMax = 30 * time.Second
	// PingTimeout is how long a ping's TxID is remembered; a pong after that
	// is stale and ignored (its RTT would be meaningless anyway).
	PingTimeout = 5 * time.Second
	// PingSpacing: one address is never pinged more often than this, however
	// many CallMeMaybes or pings from the peer ask for it.
	PingSpacing = 100 * time.Millisecond
	// UpgradeInterval: while direct, every other eligible candidate is pinged
	// this often, in case a better path (lower RTT, same site) has appeared.
	UpgradeInterval = 1 * time.Minute
	// ForgetAfter: the last good address is pinged for this long after a
	// loss, and addresses learnt at run time (from pings, CallMeMaybe or
	// traffic) are forgotten after this long without being seen.
	ForgetAfter = 2 * time.Minute
	// IdleTimeout: a peer with no WireGuard traffic either way for this long
	// is idle: it is no longer probed (see the package comment). A peer's
	// heartbeats cost a probe every 3.5 s, which only traffic is worth; most
	// pairs of a large mesh never talk. A minute (Tailscale uses 45 s) rides
	// out the pauses of periodic traffic (health checks, scrapes, WireGuard's
	// own keepalive 10 s after the last packet), so a pair that talks every
	// few tens of seconds stays confirmed; waking costs only a ping anyway.
	IdleTimeout = time.Minute
)

// Hysteresis for choosing among several confirmed addresses: a confirmed
// active address is replaced only by one that is clearly faster, that is
// faster by both switchRatio and switchMinGain.
const (
	switchRatio   = 0.7
	switchMinGain = time.Millisecond
)

// Bounds on memory per peer.
const (
	// MaxCandidates bounds the published candidates taken from MeshNode.
	MaxCandidates = 16
	// MaxLearned bounds the addresses learnt at run time.
	MaxLearned = 8
	// maxOutstanding bounds the pings awaiting a pong.
	maxOutstanding = 64
)

// Candidate is one UDP endpoint at which a peer may be reachable.
type Candidate struct {
	Addr netip.AddrPort
	// Kind is where the address came from: a published kind, or
	// vocab.EndpointObserved for one learnt from the network.
	Kind vocab.EndpointKind
	// SameLAN marks a host candidate on one of this node's own subnets (the
	// peer shares our site): it is tried whatever the NAT types say, and
	// preferred. See MarkSameLAN.
	SameLAN bool
}

// MarkSameLAN sets SameLAN on the host candidates whose address lies in one of
// this node's own subnets, and returns c.
func MarkSameLAN(c []Candidate, own []netip.Prefix) []Candidate {
	for i := range c {
		if c[i].Kind != vocab.EndpointHost {
			continue
		}
		a := c[i].Addr.Addr().Unmap()
		for _, p := range own {
			if p.Contains(a) {
				c[i].SameLAN = true
				break
			}
		}
	}
	return c
}

// Ping is a ping the daemon must send.
type Ping struct {
	To   netip.AddrPort
	TxID [12]byte
}

// Actions is what Tick asks the daemon to do.
type Actions struct {
	// Pings to send now, directly from the WireGuard socket.
	Pings []Ping
	// CallMeMaybe: send this node's candidates to the peer through the relay
	// now (at most once per attempt).
	CallMeMaybe bool
	// Next is when Tick must be called again at the latest (after the time
	// passed to Tick). Zero means never, until the next On* call: the peer
	// is idle and nothing about it changes with time. Calling Tick earlier
	// is harmless, and the daemon should also call it soon after any On*
	// method so that what they queue goes out.
	Next time.Time
}

// How the direct address was last confirmed (Status says which).
const (
	confirmPong = "pong"
	confirmData = "traffic"
)

type cand struct {
	addr      netip.AddrPort
	kind      vocab.EndpointKind
	sameLAN   bool
	published bool // in the peer's MeshNode
	learned   bool // seen at run time
	lastSeen  time.Time

	lastPing   time.Time
	lastPong   time.Time // zero: no RTT measured
	rtt        time.Duration
	trustUntil time.Time
}

type outstanding struct {
	to   netip.AddrPort
	sent time.Time
}

// Peer is the path state of one remote node.
type Peer struct {
	name string

	cands         []*cand
	local, remote vocab.NATType
	prune         string // why NAT traversal is not attempted, "" if it is

	// The direct path.
	active      netip.AddrPort // invalid: none
	lastConfirm time.Time      // last pong from / traffic from active
	confirmedBy string         // confirmPong or confirmData
	sentSince   bool           // OnDirectSend since lastConfirm
	liveness    time.Time      // deadline of the unanswered liveness ping; zero: none
	lastUpgrade time.Time

	// Activity (see IdleTimeout).
	lastActive time.Time // last WireGuard traffic, either way
	rechecking bool      // woken on standby: the address is being checked
	recheck    time.Time // deadline of the check's ping; zero: not sent yet

	// Attempts while not direct.
	attempting   bool
	attemptStart time.Time
	nextRound    time.Time
	rounds       int
	cmmDue       bool
	nextAttempt  time.Time
	backoff      time.Duration
	failed       int // attempts failed in a row
	lastTried    int // candidates pinged by the last attempt

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

// NewPeer returns the state of a newly known peer: relay at once, direct
// attempts as soon as it has candidates.
func NewPeer(name string, now time.Time) *Peer {
	return &Peer{
		name:        name,
		backoff:     RetryMin,
		nextAttempt: now,
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
		if !p.attempting && p.nextAttempt.After(at) {
			p.nextAttempt = at
		}
	}
	p.lastActive = at
	return woke
}

// Name is the name given to NewPeer.
func (p *Peer) Name() string { return p.name }

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func usable(a netip.AddrPort) bool {
	return a.IsValid() && a.Port() != 0 && !a.Addr().IsUnspecified() && !a.Addr().IsMulticast()
}

func (p *Peer) find(a netip.AddrPort) *cand {
	for _, c := range p.cands {
		if c.addr == a {
			return c
		}
	}
	return nil
}

// learn records an address seen at run time and returns its candidate.
func (p *Peer) learn(a netip.AddrPort, now time.Time) *cand {
	c := p.find(a)
	if c == nil {
		p.evictLearned()
		c = &cand{addr: a, kind: vocab.EndpointObserved}
		p.cands = append(p.cands, c)
	}
	c.learned = true
	c.lastSeen = now
	return c
}

// evictLearned makes room for one more learnt address.
func (p *Peer) evictLearned() {
	n := 0
	var oldest *cand
	for _, c := range p.cands {
		if !c.learned || c.published {
			continue
		}
		n++
		if c.addr == p.active || c.addr == p.lastGood {
			continue
		}
		if oldest == nil || c.lastSeen.Before(oldest.lastSeen) {
			oldest = c
		}
	}
	if n >= MaxLearned && oldest != nil {
		p.remove(oldest)
	}
}

func (p *Peer) remove(c *cand) {
	p.cands = slices.DeleteFunc(p.cands, func(x *cand) bool { return x == c })
	p.immediate = slices.DeleteFunc(p.immediate, func(a netip.AddrPort) bool { return a == c.addr })
}

// SetCandidates sets the peer's published candidates and both sides' NAT
// types. The NAT types only prune and order attempts:
//   - either side udp-blocked, or both symmetric: no NAT traversal at all
//     (Status says why); only configured candidates, same-LAN host
//     candidates and the candidates of a peer with no NAT ("open") are tried;
//   - our side symmetric, theirs cone: we initiate to their mapped (stun)
//     candidates, and our CallMeMaybe has them answer;
//   - our side cone, theirs symmetric: we still probe (our packets open our
//     mapping for theirs) but expect the relay;
//   - anything else, unknown included: every candidate is tried.
//
// Host candidates are tried unless pruned, since two nodes behind one NAT
// reach each other only that way; SameLAN ones always.
//
// Calling it again with the same candidates and types changes nothing. When
// they change and the peer is not direct, a new attempt starts at once with
// the backoff reset; when it is direct, the new candidates are probed in case
// they are better.
func (p *Peer) SetCandidates(c []Candidate, local, remote vocab.NATType, now time.Time) {
	before := p.eligibleAddrs()
	beforePrune := p.prune

	p.local, p.remote = local, remote
	p.prune = pruneReason(local, remote)

	var keep []*cand
	seen := map[netip.AddrPort]bool{}
	for _, x := range c {
		a := unmap(x.Addr)
		if !usable(a) || seen[a] || len(seen) >= MaxCandidates {
			continue
		}
		seen[a] = true
		old := p.find(a)
		if old == nil {
			old = &cand{addr: a}
		}
		old.kind = x.Kind
		old.sameLAN = x.SameLAN && x.Kind == vocab.EndpointHost
		old.published = true
		keep = append(keep, old)
	}
	for _, old := range p.cands {
		if seen[old.addr] {
			continue
		}
		old.published = false
		if old.addr == p.active || old.addr == p.lastGood {
			// Proven addresses stay whatever the MeshNode says now.
			old.learned = true
			if old.lastSeen.IsZero() {
				old.lastSeen = now
			}
		}
		if old.learned {
			old.kind = vocab.EndpointObserved
			keep = append(keep, old)
		}
	}
	p.cands = keep
	p.immediate = slices.DeleteFunc(p.immediate, func(a netip.AddrPort) bool { return p.find(a) == nil })

	if slices.Equal(before, p.eligibleAddrs()) && beforePrune == p.prune {
		return
	}
	if p.state(now) == stateDirect {
		p.lastUpgrade = time.Time{} // probe the new set at the next tick
		return
	}
	p.backoff = RetryMin
	p.failed = 0
	p.nextAttempt = now
	if p.attempting {
		p.startAttempt(now, true)
	}
}

func pruneReason(local, remote vocab.NATType) string {
	lb, rb := local == vocab.NATUDPBlocked, remote == vocab.NATUDPBlocked
	switch {
	case lb && rb:
		return "both sides have UDP blocked"
	case lb:
		return "UDP blocked on this node"
	case rb:
		return "UDP blocked at peer"
	case local == vocab.NATSymmetric && remote == vocab.NATSymmetric:
		return "both sides symmetric NAT"
	}
	return ""
}

// eligible reports whether attempts ping c.
func (p *Peer) eligible(c *cand) bool {
	switch {
	case !c.published:
		return c.learned // seen at run time: worth a try whatever the NAT types
	case c.kind == vocab.EndpointConfigured, c.sameLAN, p.remote == vocab.NATOpen:
		return true
	case p.prune != "":
		return false
	}
	return true
}

func (p *Peer) eligibleAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, c := range p.cands {
		if p.eligible(c) {
			out = append(out, c.addr)
		}
	}
	return out
}

// rank orders candidate kinds when RTTs do not clearly decide: a host address
// (no NAT in the way, same site) before an operator's configured address
// before NAT-mapped ones.
func rank(c *cand) int {
	switch {
	case c.sameLAN:
		return 0
	case c.kind == vocab.EndpointHost:
		return 1
	case c.kind == vocab.EndpointConfigured:
		return 2
	}
	return 3
}

func clearlyFaster(a, b time.Duration) bool {
	return float64(a) < switchRatio*float64(b) && b-a >= switchMinGain
}

// better reports whether confirmed candidate n should replace the confirmed
// active candidate cur. Hysteresis: only a clearly faster address, or one of
// a better kind that is not clearly slower, wins; an active address whose RTT
// is unknown (confirmed by traffic) is kept.
func better(n, cur *cand) bool {
	if n.lastPong.IsZero() || cur.lastPong.IsZero() {
		return false
	}
	if clearlyFaster(n.rtt, cur.rtt) {
		return true
	}
	return rank(n) < rank(cur) && !clearlyFaster(cur.rtt, n.rtt)
}

type state int

const (
	stateRelay state = iota
	stateDirect
	stateStandby // idle, or woken and checking: direct and relay, named direct
	stateDegraded
	stateLost // relay only; Tick has not cleaned up yet
)

// confirmedUntil is when the active path stops being confirmed: trust
// expiry, or an unanswered liveness ping if that comes first.
func (p *Peer) confirmedUntil(c *cand) time.Time {
	t := c.trustUntil
	if !p.liveness.IsZero() && p.liveness.Before(t) {
		t = p.liveness
	}
	return t
}

// doubtFrom is when the active path came into doubt: when it stopped being
// confirmed or, for a peer woken on standby, when the check of the address
// went unanswered.
func (p *Peer) doubtFrom(c *cand) time.Time {
	t := p.confirmedUntil(c)
	if p.rechecking && p.recheck.After(t) {
		t = p.recheck
	}
	return t
}

func (p *Peer) state(now time.Time) state {
	if !p.active.IsValid() {
		return stateRelay
	}
	c := p.find(p.active)
	if c == nil {
		return stateRelay
	}
	u := p.confirmedUntil(c)
	switch {
	case now.Before(u):
		return stateDirect
	case !p.Active(now):
		// Confirmed until after the traffic stopped: the path did not
		// fail, it was only no longer probed.
		if !u.Before(p.lastActive.Add(IdleTimeout)) {
			return stateStandby
		}
	case p.rechecking && (p.recheck.IsZero() || now.Before(p.recheck)):
		return stateStandby
	}
	if now.Before(p.doubtFrom(c).Add(FallbackAfter)) {
		return stateDegraded
	}
	return stateLost
}

// Send says where WireGuard packets for this peer go at this instant:
// confirmed direct → the direct address only (no duplicates once confirmed);
// doubted (trust expired or a liveness ping unanswered) but within
// FallbackAfter → both; on standby (idle, see the package comment) → both;
// otherwise → the relay only. The relay is usable from the first moment.
// Send does not change the Peer.
func (p *Peer) Send(now time.Time) (direct netip.AddrPort, viaRelay bool) {
	switch p.state(now) {
	case stateDirect:
		return p.active, false
	case stateDegraded, stateStandby:
		return p.active, true
	}
	return netip.AddrPort{}, true
}

// Path is the peer's path name (PathDirect, PathRelay or PathBoth) at now
// and the direct address in use, if any: Status without the formatting, for
// callers that look at every peer on every tick. It does not change the Peer.
// It is what Send says, except on standby: an idle peer's direct address
// that did not fail (and, once traffic resumes, while it is being checked)
// is its path, though the relay carries packets too until it answers.
func (p *Peer) Path(now time.Time) (vocab.Path, netip.AddrPort) { return p.pathName(now) }

func (p *Peer) pathName(now time.Time) (vocab.Path, netip.AddrPort) {
	switch p.state(now) {
	case stateDirect, stateStandby:
		return vocab.PathDirect, p.active
	case stateDegraded:
		return vocab.PathBoth, p.active
	}
	return vocab.PathRelay, netip.AddrPort{}
}

// observe counts changes of path or direct address.
func (p *Peer) observe(now time.Time) {
	path, addr := p.pathName(now)
	if path != p.lastPath || addr != p.lastAddr {
		p.changes++
		p.lastPath, p.lastAddr = path, addr
	}
}

// confirm records that a was proven to work at now.
func (p *Peer) confirm(a netip.AddrPort, how string, now time.Time) {
	c := p.find(a)
	if c == nil {
		c = p.learn(a, now)
	}
	c.lastSeen = now
	if t := now.Add(TrustDirect); t.After(c.trustUntil) {
		c.trustUntil = t
	}
	switch {
	case a == p.active:
	case p.state(now) != stateDirect:
		p.adopt(a)
	case how == confirmData:
		// Authenticated traffic from a new source while another address is
		// confirmed: the peer's NAT rebound (or it moved). WireGuard follows
		// the source; so do we.
		if !now.Before(p.lastConfirm) {
			p.adopt(a)
		}
	default:
		if cur := p.find(p.active); cur == nil || better(c, cur) {
			p.adopt(a)
		}
	}
	if a == p.active && now.After(p.lastConfirm) {
		p.lastConfirm = now
		p.confirmedBy = how
		p.sentSince = false
		p.liveness = time.Time{}
	}
	if p.state(now) == stateDirect {
		p.attempting = false
		p.cmmDue = false
		p.backoff = RetryMin
		p.failed = 0
		p.lastGood = netip.AddrPort{}
		p.lostAt = time.Time{}
		p.rechecking = false
		p.recheck = time.Time{}
	}
	p.observe(now)
}

func (p *Peer) adopt(a netip.AddrPort) {
	p.active = a
	p.liveness = time.Time{}
	p.sentSince = false
	p.lastConfirm = time.Time{}
	p.rechecking = false
	p.recheck = time.Time{}
}

// OnPong records a pong that arrived directly from `from`. Only a pong that
// answers a ping we sent to that very address, within PingTimeout, counts;
// anything else (unknown or stale TxID, wrong source) is ignored. A pong
// confirms the address and measures its RTT.
func (p *Peer) OnPong(from netip.AddrPort, txid [12]byte, now time.Time) {
	from = unmap(from)
	o, ok := p.pings[txid]
	if !ok || o.to != from {
		return
	}
	delete(p.pings, txid)
	if now.Sub(o.sent) > PingTimeout || now.Before(o.sent) {
		return
	}
	c := p.find(from)
	if c == nil {
		c = p.learn(from, now)
	}
	rtt := now.Sub(o.sent)
	c.rtt, c.lastPong = rtt, now
	p.lastRTT, p.lastPong = rtt, now
	p.confirm(from, confirmPong, now)
}

// OnDirectRecv records that authenticated WireGuard traffic from this peer
// arrived directly from `from` at `at` (the daemon may report the latest such
// packet once per tick rather than every packet). It confirms that address;
// if it is a new source, it becomes the direct address (NAT rebinding).
//
// "Authenticated" is the caller's promise and this method's whole premise:
// packets that merely look like WireGuard prove nothing (anyone can send
// them from any source), so the daemon reports them with OnDirectHint, and
// only calls this when the device's own receive counters show that the
// peer's packets decrypted and could only have come from `from`.
func (p *Peer) OnDirectRecv(from netip.AddrPort, at time.Time) {
	from = unmap(from)
	if !usable(from) {
		return
	}
	p.noteActive(at)
	p.learn(from, at)
	p.confirm(from, confirmData, at)
}

// OnDirectHint records that packets that look like this peer's WireGuard
// traffic arrived directly from `from`, unauthenticated. It is only a hint,
// never a confirmation: if `from` is an address already known for the peer,
// not freshly confirmed and not pinged within HeartbeatRetry, it is pinged
// at the next Tick, and only a pong confirms it. So hints, however many,
// cost at most a ping per HeartbeatRetry, and unknown addresses are ignored:
// spoofed packets cannot make the node ping addresses of an attacker's
// choosing. Being traffic, if unproven, hints keep the peer active (a
// spoofer can make the node probe the peer as if it were talking to it, no
// more).
func (p *Peer) OnDirectHint(from netip.AddrPort, now time.Time) {
	from = unmap(from)
	p.noteActive(now)
	c := p.find(from)
	switch {
	case c == nil:
	case from == p.active && p.state(now) == stateDirect && now.Sub(p.lastConfirm) < SuspectAfter:
	case !c.lastPing.IsZero() && now.Sub(c.lastPing) < HeartbeatRetry && !now.Before(c.lastPing):
	default:
		p.queue(from)
	}
}

// OnDirectSend records that a WireGuard packet was sent to the direct
// address at `at` (the daemon may report the latest once per tick). It arms
// fast loss detection: if nothing confirms the path within SuspectAfter of
// the last confirmation, Tick pings it, and if that goes unanswered for
// LivenessWait packets go on both paths, long before TrustDirect runs out.
// Without these reports only TrustDirect detects a loss.
//
// It returns true when this report armed that detection (the first send
// since the last confirmation): Tick must then run by the Next it returns,
// within a fraction of SuspectAfter (a daemon that ticks every few hundred
// milliseconds anyway can ignore the result). A send is traffic: it keeps
// the peer active, or wakes it.
func (p *Peer) OnDirectSend(at time.Time) bool {
	p.noteActive(at)
	if p.sentSince || !p.active.IsValid() || !at.After(p.lastConfirm) {
		return false
	}
	p.sentSince = true
	return true
}

// OnPing records that the peer pinged us directly from `from` (the daemon
// answers with a pong itself). The address proves the peer can reach us from
// there, perhaps through a new NAT mapping, so it is remembered and pinged
// back at the next Tick unless it is already the confirmed direct address.
func (p *Peer) OnPing(from netip.AddrPort, now time.Time) {
	from = unmap(from)
	if !usable(from) {
		return
	}
	p.learn(from, now)
	if from == p.active && p.state(now) == stateDirect {
		return
	}
	p.queue(from)
}

// OnCallMeMaybe records that the peer asked us, through the relay, to probe
// these addresses now: they are remembered and pinged at the next Tick
// (hole punching: the peer is pinging us at the same moment). The confirmed
// direct address is not pinged again. At most MaxCandidates are taken.
func (p *Peer) OnCallMeMaybe(addrs []netip.AddrPort, now time.Time) {
	n := 0
	for _, a := range addrs {
		a = unmap(a)
		if !usable(a) {
			continue
		}
		if n++; n > MaxCandidates {
			break
		}
		if c := p.find(a); c == nil || !c.published {
			p.learn(a, now)
		} else {
			c.lastSeen = now
		}
		if a == p.active && p.state(now) == stateDirect {
			continue
		}
		p.queue(a)
	}
}

func (p *Peer) queue(a netip.AddrPort) {
	if !slices.Contains(p.immediate, a) {
		p.immediate = append(p.immediate, a)
	}
}

// ping adds a ping to c unless one went out within PingSpacing, and returns
// when the latest ping to c was sent.
func (p *Peer) ping(acts *Actions, c *cand, now time.Time) time.Time {
	if !c.lastPing.IsZero() && now.Sub(c.lastPing) < PingSpacing && !now.Before(c.lastPing) {
		return c.lastPing
	}
	var tx [12]byte
	rand.Read(tx[:]) // crypto/rand never fails
	if len(p.pings) >= maxOutstanding {
		var oldest [12]byte
		var ot time.Time
		for k, o := range p.pings {
			if ot.IsZero() || o.sent.Before(ot) {
				oldest, ot = k, o.sent
			}
		}
		delete(p.pings, oldest)
	}
	p.pings[tx] = outstanding{to: c.addr, sent: now}
	c.lastPing = now
	acts.Pings = append(acts.Pings, Ping{To: c.addr, TxID: tx})
	return now
}

func (p *Peer) startAttempt(now time.Time, callMeMaybe bool) {
	p.attempting = true
	p.attemptStart = now
	p.nextRound = now
	p.rounds = 0
	p.cmmDue = callMeMaybe
}

// Tick advances the machine to now and returns what to do: pings to send, a
// CallMeMaybe to send through the relay, and when to tick next.
func (p *Peer) Tick(now time.Time) Actions {
	var acts Actions
	p.expire(now)
	active := p.Active(now)

	st := p.state(now)
	if st != stateDirect {
		// Another address may still be confirmed (from an upgrade round or
		// an attempt): use the best of them rather than doubt.
		var best *cand
		for _, c := range p.cands {
			if c.addr != p.active && now.Before(c.trustUntil) && (best == nil || better(c, best) || best.lastPong.IsZero()) {
				best = c
			}
		}
		if best != nil {
			p.adopt(best.addr)
			p.lastConfirm = now
			p.confirmedBy = confirmPong
			if best.lastPong.IsZero() {
				p.confirmedBy = confirmData
			}
			st = p.state(now)
			p.attempting = false
		}
	}
	if !active {
		// Idle: an attempt under way stops (it did not fail; traffic starts
		// the next at once).
		p.attempting = false
		p.cmmDue = false
	}

	switch st {
	case stateDirect:
		if !active {
			break
		}
		c := p.find(p.active)
		refresh := c.trustUntil.Add(-RefreshBefore)
		if !now.Before(refresh) && (c.lastPing.Before(refresh) || now.Sub(c.lastPing) >= HeartbeatRetry) {
			p.ping(&acts, c, now)
		}
		if p.sentSince && p.liveness.IsZero() && now.Sub(p.lastConfirm) >= SuspectAfter {
			sent := p.ping(&acts, c, now)
			p.liveness = sent.Add(max(LivenessWait, 2*c.rtt))
			if !now.Before(p.liveness) {
				p.liveness = now.Add(LivenessWait)
			}
		}
		if now.Sub(p.lastUpgrade) >= UpgradeInterval {
			// Every eligible address, the active one included so that its
			// RTT is current to compare against (traffic alone confirms
			// without measuring).
			p.lastUpgrade = now
			p.ping(&acts, c, now)
			for _, o := range p.cands {
				if o != c && p.eligible(o) {
					p.ping(&acts, o, now)
				}
			}
		}
	case stateStandby:
		if !active || !p.recheck.IsZero() {
			break
		}
		// Woken: check the address at once, as a liveness ping would.
		c := p.find(p.active)
		sent := p.ping(&acts, c, now)
		p.recheck = sent.Add(max(LivenessWait, 2*c.rtt))
		if !now.Before(p.recheck) {
			p.recheck = now.Add(LivenessWait)
		}
	case stateDegraded:
		if !active {
			break
		}
		c := p.find(p.active)
		if !p.attempting && len(p.eligibleAddrs()) > 0 {
			p.startAttempt(now, true)
		}
		if now.Sub(c.lastPing) >= HeartbeatRetry {
			p.ping(&acts, c, now)
		}
	case stateLost:
		p.lastGood = p.active
		p.lostAt = now
		p.active = netip.AddrPort{}
		p.liveness = time.Time{}
		p.sentSince = false
		p.lastConfirm = time.Time{}
		p.rechecking = false
		p.recheck = time.Time{}
	}

	if st != stateDirect && st != stateStandby && active {
		elig := p.eligibleAddrs()
		if !p.attempting && len(elig) > 0 && !now.Before(p.nextAttempt) {
			p.startAttempt(now, true)
		}
		if p.attempting {
			switch {
			case p.rounds >= AttemptRounds && !now.Before(p.attemptStart.Add(AttemptRounds*ProbeInterval)):
				p.attempting = false
				p.cmmDue = false
				p.failed++
				p.nextAttempt = now.Add(p.backoff)
				p.backoff = min(2*p.backoff, RetryMax)
			case p.rounds < AttemptRounds && !now.Before(p.nextRound):
				for _, c := range p.cands {
					if p.eligible(c) {
						p.ping(&acts, c, now)
					}
				}
				p.lastTried = len(elig)
				p.rounds++
				p.nextRound = now.Add(ProbeInterval)
			}
			if p.cmmDue {
				acts.CallMeMaybe = true
				p.cmmDue = false
			}
		}
		if !p.active.IsValid() && p.lastGood.IsValid() {
			if c := p.find(p.lastGood); c != nil && now.Sub(c.lastPing) >= ProbeInterval {
				p.ping(&acts, c, now)
			}
		}
	}

	// Asked for by the peer (OnPing, OnCallMeMaybe) or by hints: sent even
	// while idle, since the other side may be the one with traffic.
	for _, a := range p.immediate {
		if c := p.find(a); c != nil {
			p.ping(&acts, c, now)
		}
	}
	p.immediate = p.immediate[:0]

	acts.Next = p.next(now)
	p.observe(now)
	return acts
}

// expire forgets stale pings, the last good address and learnt addresses
// after their time.
func (p *Peer) expire(now time.Time) {
	for k, o := range p.pings {
		if now.Sub(o.sent) > PingTimeout {
			delete(p.pings, k)
		}
	}
	if p.lastGood.IsValid() && now.Sub(p.lostAt) >= ForgetAfter {
		p.lastGood = netip.AddrPort{}
		p.lostAt = time.Time{}
	}
	p.cands = slices.DeleteFunc(p.cands, func(c *cand) bool {
		return c.learned && !c.published && c.addr != p.active && c.addr != p.lastGood &&
			now.Sub(c.lastSeen) >= ForgetAfter && !now.Before(c.trustUntil)
	})
}

// next is the earliest instant after now at which Tick has something to do,
// or zero for none: an idle peer whose route cannot change until an On* call.
func (p *Peer) next(now time.Time) time.Time {
	var next time.Time
	at := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	active := p.Active(now)
	if active {
		at(now.Add(RetryMax))
		at(p.lastActive.Add(IdleTimeout)) // to go idle
	}
	st := p.state(now)
	switch st {
	case stateDirect:
		c := p.find(p.active)
		at(p.confirmedUntil(c)) // the route changes then, idle or not
		if !active {
			break
		}
		refresh := c.trustUntil.Add(-RefreshBefore)
		if now.Before(refresh) {
			at(refresh)
		} else {
			at(c.lastPing.Add(HeartbeatRetry))
		}
		if p.sentSince && p.liveness.IsZero() {
			at(p.lastConfirm.Add(SuspectAfter))
		}
		at(p.lastUpgrade.Add(UpgradeInterval))
		// Another confirmed address outliving this one takes over then.
	case stateStandby:
		if active {
			at(p.recheck)
		}
	case stateDegraded:
		c := p.find(p.active)
		at(p.doubtFrom(c).Add(FallbackAfter))
		if active {
			at(c.lastPing.Add(HeartbeatRetry))
		}
	}
	if st != stateDirect && st != stateStandby && active {
		if p.attempting {
			if p.rounds < AttemptRounds {
				at(p.nextRound)
			}
			at(p.attemptStart.Add(AttemptRounds * ProbeInterval))
		} else if len(p.eligibleAddrs()) > 0 {
			at(p.nextAttempt)
		}
		if !p.active.IsValid() && p.lastGood.IsValid() {
			if c := p.find(p.lastGood); c != nil {
				at(c.lastPing.Add(ProbeInterval))
			}
			at(p.lostAt.Add(ForgetAfter))
		}
	}
	if active && !next.After(now) {
		next = now.Add(PingSpacing)
	}
	return next
}
