package path

import (
	"net/netip"
	"time"

	"github.com/wirelace/wirelace/api/vocab"
)

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
