package nat

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/wirelace/wirelace/api/vocab"
)

// binding is the answer to a plain Binding request.
type binding struct {
	server netip.AddrPort // where the request went
	mapped netip.AddrPort // the address the server saw us at
}

// outcome is what became of one CHANGE-REQUEST.
type outcome int

const (
	// notRun: the test was not sent (the server cannot make that change).
	notRun outcome = iota
	// unsupported: the server refused (420) or answered from the address
	// the request went to, ignoring the change: no evidence either way.
	unsupported
	// silent: no answer. The NAT dropped it, or it was lost; the
	// retransmissions make loss unlikely.
	silent
	// answered: answered from the changed address, so the NAT let that
	// address in.
	answered
	// confounded: answered, but we had sent to that address (or its IP,
	// for a change of IP) recently ourselves, so even a strict NAT would
	// have let it in: no evidence either way.
	confounded
)

func (o outcome) String() string {
	return [...]string{"not run", "unsupported", "dropped", "arrived", "arrived but proves nothing (we had sent there recently)"}[o]
}

// filterTest is the RFC 5780 filtering test (section 4.4) at one server:
// two CHANGE-REQUESTs sent to its primary address.
type filterTest struct {
	server         netip.AddrPort // the primary address the requests went to
	both, portOnly outcome        // change IP and port; change port only
}

// observations is everything Classify saw, the input of classify.
type observations struct {
	servers  []netip.AddrPort // asked, in the caller's order
	bindings []binding        // answers, servers' order first, then OTHER-ADDRESS ones
	filters  []filterTest     // one per RFC 5780 server tested
	local    []netip.Addr     // the node's own addresses
}

// filtering is a filtering behaviour (RFC 4787 section 5).
type filtering int

const (
	filterUnknown filtering = iota
	endpointIndependent
	addressDependent
	addressAndPortDependent
)

func (f filtering) String() string {
	return [...]string{"untested", "endpoint-independent", "address-dependent", "address-and-port-dependent"}[f]
}

// verdict reads one filtering test. An answer proves the NAT is at least
// that open; silence proves it is stricter. When the evidence only brackets
// the behaviour, the stricter end is returned with exact false, so that
// direct attempts are never pruned for a NAT that is laxer than we think.
func (t filterTest) verdict() (f filtering, exact bool) {
	switch {
	case t.both == answered:
		// Anything gets in, whatever the other test said (its silence
		// can only be loss).
		return endpointIndependent, true
	case t.both == silent && t.portOnly == answered:
		return addressDependent, true
	case t.portOnly == silent:
		// Neither endpoint-independent nor address-dependent filtering
		// would drop an answer from the very IP we sent to.
		return addressAndPortDependent, true
	case t.both == silent:
		// Not endpoint-independent; the other-port test said nothing.
		return addressAndPortDependent, false
	case t.portOnly == answered:
		// At least address-dependent; the other-IP test said nothing.
		return addressDependent, false
	}
	return filterUnknown, false
}

func (t filterTest) describe() string {
	return fmt.Sprintf("CHANGE-REQUEST via %s: answer from other IP and port %s, from other port %s", t.server, t.both, t.portOnly)
}

// classify turns observations into a Result. It does no I/O, so the whole
// decision table is unit-tested.
//
//	no answer at all                          → udp-blocked
//	every mapped address is a local one       → open
//	two destinations saw different mappings   → symmetric
//	fewer than two server IPs answered        → unknown
//	mapping independent, filtering untested   → unknown
//	mapping independent, filtering EI/AD/APD  → cone / cone-restricted / cone-port-restricted
//
// Only answers of the first answer's address family are compared: an IPv6
// and an IPv4 mapping always differ and say nothing about each other.
func classify(obs observations) Result {
	if len(obs.bindings) == 0 {
		return Result{Type: vocab.NATUDPBlocked, Reason: fmt.Sprintf("no STUN answer from %s: UDP blocked, or the servers are down", joinAddrs(obs.servers))}
	}
	res := Result{}
	for _, b := range obs.bindings {
		if !slices.Contains(res.Mapped, b.mapped) {
			res.Mapped = append(res.Mapped, b.mapped)
		}
	}
	same := firstFamily(obs.bindings)

	f, exact, ft := bestFilter(obs.filters)
	res.FilteringTested = f != filterUnknown

	first := same[0]
	ips := serverIPs(same)
	independent := !mappingDiffers(same)
	res.MappingIndependent = independent && len(ips) >= 2
	if allLocal(same, obs.local) {
		res.Type = vocab.NATOpen
		res.Reason = fmt.Sprintf("mapped address %s is a local address: no NAT", first.mapped)
		if res.FilteringTested {
			res.Reason += "; " + filteringReason(f, exact, ft)
		}
		return res
	}
	if !independent {
		i := slices.IndexFunc(same, func(b binding) bool { return b.mapped != first.mapped })
		res.Type = vocab.NATSymmetric
		res.Reason = fmt.Sprintf("mapped %s for %s but %s for %s: endpoint-dependent mapping",
			first.mapped, first.server, same[i].mapped, same[i].server)
		return res
	}
	if len(ips) < 2 {
		res.Type = vocab.NATUnknown
		res.Reason = fmt.Sprintf("mapped %s, but only servers at %s answered: mapping behaviour needs two server IPs", first.mapped, ips[0])
		if res.FilteringTested {
			res.Reason += "; " + filteringReason(f, exact, ft)
		}
		return res
	}
	res.Reason = fmt.Sprintf("mapped %s for %s: endpoint-independent mapping", first.mapped, joinIPs(ips))
	switch f {
	case endpointIndependent:
		res.Type = vocab.NATCone
	case addressDependent:
		res.Type = vocab.NATConeRestricted
	case addressAndPortDependent:
		res.Type = vocab.NATConePortRestricted
	default:
		res.Type = vocab.NATUnknown
		if len(obs.filters) == 0 {
			res.Reason += "; no server supports RFC 5780 (no OTHER-ADDRESS): filtering untested"
		} else {
			res.Reason += "; " + obs.filters[0].describe() + ": filtering untested"
		}
		return res
	}
	res.Reason += "; " + filteringReason(f, exact, ft)
	return res
}

// bestFilter picks the filtering test to go by: the first exact one, else
// the first that says anything.
func bestFilter(tests []filterTest) (f filtering, exact bool, from filterTest) {
	for _, t := range tests {
		tf, te := t.verdict()
		if tf == filterUnknown {
			continue
		}
		if te {
			return tf, true, t
		}
		if f == filterUnknown {
			f, from = tf, t
		}
	}
	return f, false, from
}

func filteringReason(f filtering, exact bool, t filterTest) string {
	s := t.describe() + ": " + f.String() + " filtering"
	if !exact {
		s += " (assumed; the NAT may be less strict)"
	}
	return s
}

// firstFamily returns the bindings of the first one's address family.
func firstFamily(bs []binding) []binding {
	var out []binding
	for _, b := range bs {
		if b.server.Addr().Is4() == bs[0].server.Addr().Is4() {
			out = append(out, b)
		}
	}
	return out
}

// mappingDiffers reports whether two destinations of the first answer's
// family saw different mapped addresses: endpoint-dependent mapping.
func mappingDiffers(bs []binding) bool {
	if len(bs) == 0 {
		return false
	}
	same := firstFamily(bs)
	return slices.ContainsFunc(same, func(b binding) bool { return b.mapped != same[0].mapped })
}

// allLocal reports whether every mapped address has one of the node's own
// IPs: nothing translated the source address.
func allLocal(bs []binding, local []netip.Addr) bool {
	for _, b := range bs {
		if !slices.ContainsFunc(local, func(a netip.Addr) bool { return a.Unmap() == b.mapped.Addr() }) {
			return false
		}
	}
	return true
}

// serverIPs returns the distinct IPs that answered, in order.
func serverIPs(bs []binding) []netip.Addr {
	var ips []netip.Addr
	for _, b := range bs {
		if !slices.Contains(ips, b.server.Addr()) {
			ips = append(ips, b.server.Addr())
		}
	}
	return ips
}

func joinAddrs(as []netip.AddrPort) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func joinIPs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, " and ")
}
