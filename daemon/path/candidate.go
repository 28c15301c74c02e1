package path

import (
	"net/netip"
	"slices"
	"time"

	"github.com/wirelace/wirelace/api/vocab"
	"github.com/wirelace/wirelace/internal/netipx"
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
	p.prune = pruneFor(local, remote)

	var keep []*cand
	seen := map[netip.AddrPort]bool{}
	for _, x := range c {
		a := netipx.UnmapAddrPort(x.Addr)
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
	p.att.backoff = RetryMin
	p.att.failed = 0
	p.att.next = now
	if p.att.on {
		p.startAttempt(now, true)
	}
}

// pruning says why NAT traversal is not attempted for a pair, if it is not.
// The machine only compares it; Status words it.
type pruning uint8

const (
	pruneNone pruning = iota
	pruneBothBlocked
	pruneLocalBlocked
	prunePeerBlocked
	pruneBothSymmetric
)

func pruneFor(local, remote vocab.NATType) pruning {
	lb, rb := local == vocab.NATUDPBlocked, remote == vocab.NATUDPBlocked
	switch {
	case lb && rb:
		return pruneBothBlocked
	case lb:
		return pruneLocalBlocked
	case rb:
		return prunePeerBlocked
	case local == vocab.NATSymmetric && remote == vocab.NATSymmetric:
		return pruneBothSymmetric
	}
	return pruneNone
}

// eligible reports whether attempts ping c.
func (p *Peer) eligible(c *cand) bool {
	switch {
	case !c.published:
		return c.learned // seen at run time: worth a try whatever the NAT types
	case c.kind == vocab.EndpointConfigured, c.sameLAN, p.remote == vocab.NATOpen:
		return true
	case p.prune != pruneNone:
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
