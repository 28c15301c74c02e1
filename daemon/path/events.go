package path

import (
	"net/netip"
	"slices"
	"time"

	"github.com/wirelace/wirelace/internal/netipx"
)

// confirmation is what last proved the direct address works (Status says
// which).
type confirmation uint8

const (
	confirmPong confirmation = iota + 1 // a pong to our ping: RTT measured
	confirmData                         // authenticated WireGuard traffic from it
)

// confirm records that a was proven to work at now.
func (p *Peer) confirm(a netip.AddrPort, how confirmation, now time.Time) {
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
		// A proof may be dated before sends already reported (the daemon
		// dates traffic's proof at the first message of the interval it
		// covers): those still await an answer, but for replies to it.
		p.sentSince = p.lastSent.After(p.repliesUntil())
		p.unanswered = now
		// A proof dated before the doubt began (traffic counted only after
		// the liveness ping went out, its proof dated at its arrival) says
		// nothing about the path since: the ping still wants its answer.
		// Clearing it would restart the wait, and a cut found that way is
		// found up to a counter read later.
		if !now.Before(p.doubtSince) {
			p.liveness = time.Time{}
		}
	}
	if p.state(now) == stateDirect {
		p.att.on = false
		p.att.cmmDue = false
		p.att.backoff = RetryMin
		p.att.failed = 0
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
	from = netipx.UnmapAddrPort(from)
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
	from = netipx.UnmapAddrPort(from)
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
	from = netipx.UnmapAddrPort(from)
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
// the first send since the last confirmation, Tick pings it, and if that
// goes unanswered for LivenessWait packets go on both paths, long before
// TrustDirect runs out. Counting from the send, not from the confirmation,
// lets a request that pauses and then gets its answer (a health check, a
// ping) cost no probe; a send within ReplyWindow of the traffic that last
// confirmed the path is a reply to it, and arms nothing (a side that only
// answers would otherwise ping after every answer).
// Without these reports only TrustDirect detects a loss.
//
// It returns true when this report armed that detection (the first send
// since the last confirmation): Tick must then run by the Next it returns,
// within a fraction of SuspectAfter (a daemon that ticks every few hundred
// milliseconds anyway can ignore the result). A send is traffic: it keeps
// the peer active, or wakes it.
func (p *Peer) OnDirectSend(at time.Time) bool {
	p.noteActive(at)
	if at.After(p.lastSent) {
		p.lastSent = at
	}
	if p.sentSince || !p.active.IsValid() || !at.After(p.repliesUntil()) {
		return false
	}
	p.sentSince = true
	p.unanswered = at
	return true
}

// repliesUntil is the end of the window in which sends are taken for
// replies to the last confirmation (see ReplyWindow): only traffic's, as
// nothing replies to a pong.
func (p *Peer) repliesUntil() time.Time {
	if p.confirmedBy == confirmData {
		return p.lastConfirm.Add(ReplyWindow)
	}
	return p.lastConfirm
}

// OnRelayRecv records that WireGuard traffic from this peer arrived through
// the relay at `at`. It is traffic (see OnActivity, whose result it
// returns), and, while the direct path is confirmed, news: the peer sends
// through the relay only when it doubts the path. If nothing has confirmed
// the path for SuspectAfter either, it is doubted at once: packets go on
// both paths and Tick pings the address, as after an unanswered liveness
// ping. So the second side of a cut path follows the first within a relay
// trip, instead of waiting for its own sends to go unanswered (a side that
// only answers sends nothing on a cut path). A freshly confirmed path is
// left alone: the peer may just be waking from standby.
//
// The relay authenticates the sender of what it carries, so this cannot be
// forged by a third party.
func (p *Peer) OnRelayRecv(at time.Time) bool {
	woke := p.noteActive(at)
	if p.state(at) == stateDirect && at.Sub(p.lastConfirm) >= SuspectAfter && (p.liveness.IsZero() || at.Before(p.liveness)) {
		p.liveness, p.doubtSince = at, at
	}
	return woke
}

// OnPing records that the peer pinged us directly from `from` (the daemon
// answers with a pong itself). The address proves the peer can reach us from
// there, perhaps through a new NAT mapping, so it is remembered and pinged
// back at the next Tick unless it is already the confirmed direct address.
func (p *Peer) OnPing(from netip.AddrPort, now time.Time) {
	from = netipx.UnmapAddrPort(from)
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
		a = netipx.UnmapAddrPort(a)
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
