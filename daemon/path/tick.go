package path

import (
	"net/netip"
	"slices"
	"time"
)

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

func (p *Peer) startAttempt(now time.Time, callMeMaybe bool) {
	p.att.on = true
	p.att.start = now
	p.att.nextRound = now
	p.att.rounds = 0
	p.att.cmmDue = callMeMaybe
}

// Tick advances the machine to now and returns what to do: pings to send, a
// CallMeMaybe to send through the relay, and when to tick next.
func (p *Peer) Tick(now time.Time) Actions {
	var acts Actions
	p.expire(now)
	active := p.Active(now)

	st := p.state(now)
	if st != stateDirect && p.adoptConfirmed(now) {
		st = p.state(now)
	}
	if !active {
		// Idle: an attempt under way stops (it did not fail; traffic starts
		// the next at once).
		p.att.on = false
		p.att.cmmDue = false
	}

	switch {
	case st == stateLost:
		p.loseDirect(now)
	case !active:
		// Nothing to probe: idle peers cost nothing.
	case st == stateDirect:
		p.keepDirect(&acts, now)
	case st == stateStandby:
		p.checkWoken(&acts, now)
	case st == stateDegraded:
		p.pingDoubted(&acts, now)
	}
	if st != stateDirect && st != stateStandby && active {
		p.search(&acts, now)
	}
	p.pingAsked(&acts, now)

	acts.Next = p.next(now)
	p.observe(now)
	return acts
}

// adoptConfirmed makes another address that is still confirmed (by an
// upgrade round or an attempt) the direct path, the best of them, rather
// than doubt the current one. It reports whether it found one.
func (p *Peer) adoptConfirmed(now time.Time) bool {
	var best *cand
	for _, c := range p.cands {
		if c.addr != p.active && now.Before(c.trustUntil) && (best == nil || better(c, best) || best.lastPong.IsZero()) {
			best = c
		}
	}
	if best == nil {
		return false
	}
	p.adopt(best.addr)
	p.lastConfirm = now
	p.confirmedBy = confirmPong
	if best.lastPong.IsZero() {
		p.confirmedBy = confirmData
	}
	p.att.on = false
	return true
}

// keepDirect sends a confirmed path's pings: the heartbeat before its trust
// runs out, a liveness ping when we send and hear nothing (SuspectAfter),
// and now and then an upgrade round to every other candidate.
func (p *Peer) keepDirect(acts *Actions, now time.Time) {
	c := p.find(p.active)
	refresh := c.trustUntil.Add(-RefreshBefore)
	if !now.Before(refresh) && (c.lastPing.Before(refresh) || now.Sub(c.lastPing) >= HeartbeatRetry) {
		p.ping(acts, c, now)
	}
	if p.sentSince && p.liveness.IsZero() && now.Sub(p.unanswered) >= SuspectAfter {
		sent := p.ping(acts, c, now)
		p.liveness, p.doubtSince = answerBy(sent, c.recentRTT(now), now), now
	}
	if now.Sub(p.lastUpgrade) >= UpgradeInterval {
		// Every eligible address, the active one included so that its RTT
		// is current to compare against (traffic alone confirms without
		// measuring).
		p.lastUpgrade = now
		p.ping(acts, c, now)
		for _, o := range p.cands {
			if o != c && p.eligible(o) {
				p.ping(acts, o, now)
			}
		}
	}
}

// checkWoken pings, once, the address of a peer woken on standby, as a
// liveness ping would.
func (p *Peer) checkWoken(acts *Actions, now time.Time) {
	if !p.recheck.IsZero() {
		return
	}
	c := p.find(p.active)
	sent := p.ping(acts, c, now)
	p.recheck = answerBy(sent, c.recentRTT(now), now)
}

// recentRTT is the candidate's RTT if a pong measured it within
// RTTRecent, else zero: a check ping's wait stretches for the load a
// recent pong showed, not for one long past. Once traffic confirms a path,
// pongs come about once an UpgradeInterval, and one slow pong (a loaded
// moment, the node's start) would otherwise slow every liveness check
// until the next (the likely cause of failover gaps of 0.6 s, against
// 0.3-0.4 s, in 2 of 6 lab runs once traffic confirmed paths).
func (c *cand) recentRTT(now time.Time) time.Duration {
	if c.lastPong.IsZero() || now.Sub(c.lastPong) > RTTRecent || now.Before(c.lastPong) {
		return 0
	}
	return c.rtt
}

// answerBy is the deadline for the answer to a check ping sent at `sent`:
// LivenessWait, or twice the RTT if that is longer, and never already past.
func answerBy(sent time.Time, rtt time.Duration, now time.Time) time.Time {
	t := sent.Add(max(LivenessWait, 2*rtt))
	if !now.Before(t) {
		t = now.Add(LivenessWait)
	}
	return t
}

// pingDoubted keeps pinging a direct address in doubt, every
// HeartbeatRetry, and starts a search for another.
func (p *Peer) pingDoubted(acts *Actions, now time.Time) {
	c := p.find(p.active)
	if !p.att.on && len(p.eligibleAddrs()) > 0 {
		p.startAttempt(now, true)
	}
	if now.Sub(c.lastPing) >= HeartbeatRetry {
		p.ping(acts, c, now)
	}
}

// loseDirect gives the direct address up (FallbackAfter without a
// confirmation) and remembers it as the last good one, still pinged for
// ForgetAfter.
func (p *Peer) loseDirect(now time.Time) {
	if c := p.find(p.active); c != nil && c.trustUntil.After(now) {
		// Given up on after an unanswered liveness ping, before its trust
		// ran out: that trust is void, or the next tick would adopt the
		// address again as still confirmed.
		c.trustUntil = now
	}
	p.lastGood = p.active
	p.lostAt = now
	p.adopt(netip.AddrPort{})
}

// search runs the attempts of an active peer without a confirmed path:
// starts one when its backoff is over, sends its rounds and CallMeMaybe,
// ends it as failed after its last round, and pings the last good address.
func (p *Peer) search(acts *Actions, now time.Time) {
	elig := p.eligibleAddrs()
	if !p.att.on && len(elig) > 0 && !now.Before(p.att.next) {
		p.startAttempt(now, true)
	}
	if p.att.on {
		switch {
		case p.att.rounds >= AttemptRounds && !now.Before(p.att.start.Add(AttemptRounds*ProbeInterval)):
			p.att.on = false
			p.att.cmmDue = false
			p.att.failed++
			p.att.next = now.Add(p.att.backoff)
			p.att.backoff = min(2*p.att.backoff, RetryMax)
		case p.att.rounds < AttemptRounds && !now.Before(p.att.nextRound):
			for _, c := range p.cands {
				if p.eligible(c) {
					p.ping(acts, c, now)
				}
			}
			p.att.tried = len(elig)
			p.att.rounds++
			p.att.nextRound = now.Add(ProbeInterval)
		}
		if p.att.cmmDue {
			acts.CallMeMaybe = true
			p.att.cmmDue = false
		}
	}
	if !p.active.IsValid() && p.lastGood.IsValid() {
		if c := p.find(p.lastGood); c != nil && now.Sub(c.lastPing) >= LostRecheck {
			p.ping(acts, c, now)
		}
	}
}

// pingAsked pings what the peer asked for (OnPing, OnCallMeMaybe) or hints
// pointed at: sent even while idle, since the other side may be the one
// with traffic.
func (p *Peer) pingAsked(acts *Actions, now time.Time) {
	for _, a := range p.immediate {
		if c := p.find(a); c != nil {
			p.ping(acts, c, now)
		}
	}
	p.immediate = p.immediate[:0]
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
			at(p.unanswered.Add(SuspectAfter))
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
		if p.att.on {
			if p.att.rounds < AttemptRounds {
				at(p.att.nextRound)
			}
			at(p.att.start.Add(AttemptRounds * ProbeInterval))
		} else if len(p.eligibleAddrs()) > 0 {
			at(p.att.next)
		}
		if !p.active.IsValid() && p.lastGood.IsValid() {
			if c := p.find(p.lastGood); c != nil {
				at(c.lastPing.Add(LostRecheck))
			}
			at(p.lostAt.Add(ForgetAfter))
		}
	}
	if active && !next.After(now) {
		next = now.Add(PingSpacing)
	}
	return next
}
