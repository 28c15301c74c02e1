package nat

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/wirelace/wirelace/internal/netipx"
)

// Time limits of a classification. A NAT type is wanted seconds after
// start-up, so the whole run is bounded by bindingTimeout+filterTimeout
// (2.5 s); an unreachable set of servers is reported as UDP-blocked after
// bindingTimeout.
const (
	// bindingTimeout bounds the first round: a Binding request to every
	// server, in parallel (sends at 0, 200, 600, 1400 ms).
	bindingTimeout = 1500 * time.Millisecond
	// filterTimeout bounds the second round: CHANGE-REQUESTs, and requests
	// to OTHER-ADDRESSes, to servers that have just answered, so a shorter
	// wait suffices (sends at 0, 200, 600 ms). Silence is the expected
	// outcome behind most NATs, so this wait is nearly always spent in full.
	filterTimeout = 1000 * time.Millisecond
	// permissionMemory is how long a send to an address is assumed to keep
	// the NAT open to answers from it. RFC 4787 asks for UDP mappings of at
	// least 2 min and home routers keep up to 5 min.
	permissionMemory = 5 * time.Minute
)

// Classify tells the NAT behaviour in front of the client's socket.
//
// Round one sends a Binding request to every server in parallel. Mapping
// behaviour comes from comparing the mapped addresses seen by different
// server IPs. Round two, for each server that advertised an RFC 5780
// OTHER-ADDRESS, runs the filtering test: CHANGE-REQUEST "change IP and
// port" (answered → endpoint-independent filtering) and "change port"
// (answered → address-dependent; both silent → address-and-port-dependent),
// both at once to keep the time bound. When fewer than two server IPs
// answered round one, round two also asks the OTHER-ADDRESSes for a second
// mapping; it does so only then, because a send to an OTHER-ADDRESS opens the
// NAT to the very answers the filtering test waits for, spoiling it for
// minutes (see permissionMemory). Round two is skipped when round one
// already shows endpoint-dependent mapping.
//
// localAddrs are the node's own addresses: a mapped address among them means
// no NAT (open). Servers that answer nothing make the result udp-blocked; no
// answer is never an error. Errors are for bad input, a cancelled ctx, and
// a socket that could not send a single request.
func (c *Client) Classify(ctx context.Context, servers []netip.AddrPort, localAddrs []netip.Addr) (Result, error) {
	servers, err := checkServers(servers)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	obs := observations{servers: servers}
	for _, a := range localAddrs {
		obs.local = append(obs.local, a.Unmap())
	}

	first, err := c.bindAll(ctx, servers)
	if err != nil {
		return Result{}, err
	}
	for i, r := range first {
		if r != nil {
			obs.bindings = append(obs.bindings, binding{server: servers[i], mapped: r.mapped})
		}
	}
	// Once two servers saw different mappings the NAT is symmetric, and
	// its filtering does not change what peers can do: skip round two.
	if len(obs.bindings) > 0 && !mappingDiffers(obs.bindings) {
		if err := c.secondRound(ctx, &obs, first); err != nil {
			return Result{}, err
		}
	}

	res := classify(obs)
	c.log.Debug("NAT classified", "type", string(res.Type), "mapped", joinAddrs(res.Mapped),
		"reason", res.Reason, "took", time.Since(start).Round(time.Millisecond).String())
	return res, nil
}

// checkServers validates and deduplicates the server list.
func checkServers(servers []netip.AddrPort) ([]netip.AddrPort, error) {
	if len(servers) == 0 {
		return nil, errors.New("NAT classification: no STUN servers configured")
	}
	out := make([]netip.AddrPort, 0, len(servers))
	for _, s := range servers {
		s = netipx.UnmapAddrPort(s)
		if !s.IsValid() || s.Addr().IsUnspecified() || s.Port() == 0 {
			return nil, fmt.Errorf("NAT classification: STUN server address %q is not a host:port to send to", s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// bindAll sends a Binding request to every server at once and returns the
// successful answers, nil where none came.
func (c *Client) bindAll(ctx context.Context, servers []netip.AddrPort) ([]*reply, error) {
	out := make([]*reply, len(servers))
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() {
			r, ok, err := c.transact(ctx, s, change{}, netip.AddrPort{}, bindingTimeout)
			switch {
			case err != nil:
				errs[i] = err
			case !ok:
			case !r.ok():
				c.log.Debug("STUN: binding refused", "server", s.String(), "code", r.errCode)
			default:
				out[i] = &r
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("NAT classification: %w", err)
	}
	// One unreachable server (no IPv6 route, say) is an observation; not
	// a single request leaving the socket is a local failure.
	if !slices.Contains(errs, nil) {
		return nil, fmt.Errorf("NAT classification: %w", errors.Join(errs...))
	}
	return out, nil
}

// secondRound runs the RFC 5780 tests against the servers of round one that
// advertised an OTHER-ADDRESS, adding what it learns to obs.
func (c *Client) secondRound(ctx context.Context, obs *observations, first []*reply) error {
	ips := serverIPs(obs.bindings)
	needMapping := len(ips) < 2

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		extra   []binding
		filters = make([]filterTest, len(first))
		tested  = make([]bool, len(first))
	)
	if needMapping {
		// Noted up front: these sends spoil the change-IP test of their
		// own server, and the result must not depend on which goroutine
		// runs first.
		now := time.Now()
		for i, r := range first {
			if r != nil && usableOther(obs.servers[i], r.other) && !slices.Contains(ips, r.other.Addr()) {
				c.noteContacted(r.other, now)
			}
		}
	}
	for i, r := range first {
		if r == nil || !usableOther(obs.servers[i], r.other) {
			continue
		}
		server, other := obs.servers[i], r.other
		tested[i] = true
		filters[i].server = server
		if other.Addr() != server.Addr() {
			wg.Go(func() {
				filters[i].both = c.changeTest(ctx, server, change{ip: true, port: true}, other, true)
			})
		}
		if other.Port() != server.Port() {
			wg.Go(func() {
				from := netip.AddrPortFrom(server.Addr(), other.Port())
				filters[i].portOnly = c.changeTest(ctx, server, change{port: true}, from, false)
			})
		}
		if needMapping && !slices.Contains(ips, other.Addr()) {
			wg.Go(func() {
				r, ok, err := c.transact(ctx, other, change{}, netip.AddrPort{}, filterTimeout)
				if err != nil || !ok || !r.ok() {
					return
				}
				mu.Lock()
				extra = append(extra, binding{server: other, mapped: r.mapped})
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("NAT classification: %w", err)
	}
	// Goroutines finish in any order; keep the result deterministic.
	slices.SortFunc(extra, func(a, b binding) int { return a.server.Compare(b.server) })
	obs.bindings = append(obs.bindings, extra...)
	for i, t := range filters {
		if tested[i] {
			obs.filters = append(obs.filters, t)
		}
	}
	return nil
}

// usableOther reports whether an OTHER-ADDRESS can be tested against: same
// family as the server and different from it.
func usableOther(server, other netip.AddrPort) bool {
	return other.IsValid() && other.Port() != 0 && !other.Addr().IsUnspecified() &&
		other.Addr().Is4() == server.Addr().Is4() && other != server
}

// changeTest sends one CHANGE-REQUEST to server and says what became of it.
// from is the address the answer must come from. anyPort says whether a send
// of ours to any port of from's IP, rather than to from exactly, would have
// opened the NAT to the answer (true for a change of IP: an
// address-dependent NAT admits the whole IP).
func (c *Client) changeTest(ctx context.Context, server netip.AddrPort, ch change, from netip.AddrPort, anyPort bool) outcome {
	r, ok, err := c.transact(ctx, server, ch, from, filterTimeout)
	switch {
	case err != nil:
		// Cancelled, or the socket failed; the caller checks ctx.
		return notRun
	case !ok:
		return silent
	case !r.ok():
		c.log.Debug("STUN: CHANGE-REQUEST refused", "server", server.String(), "change", ch.String(), "code", r.errCode)
		return unsupported
	case r.from != from:
		// Answered from where we asked, ignoring the change: a server that
		// does not really do RFC 5780.
		c.log.Debug("STUN: CHANGE-REQUEST answered from the unchanged address", "server", server.String(), "change", ch.String())
		return unsupported
	}
	// The check comes after the test, so that it also covers sends of this
	// very classification (to OTHER-ADDRESSes, or to servers listed twice
	// under different addresses).
	if c.recentlyContacted(from, anyPort, time.Now()) {
		return confounded
	}
	return answered
}
