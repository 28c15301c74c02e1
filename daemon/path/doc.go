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
//	           pinged every LostRecheck for ForgetAfter, so a path that comes
//	           back is used again within about LostRecheck (failback), whatever
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
