package path

import "time"

// Timing. The values are tuned for the project's path targets (failover gap
// under 0.5 s while traffic flows, failback under 2 s, no flapping, no
// duplicate sends once confirmed) and for a probe cost that stays negligible
// with hundreds of peers.
const (
	// ProbeInterval is how often unconfirmed candidates are pinged while
	// looking for a direct path (the rounds of an attempt). Two seconds gives
	// a NAT hole several chances within an attempt without flooding closed
	// ones.
	ProbeInterval = 2 * time.Second
	// LostRecheck is how often the last good address is pinged after a loss
	// (for ForgetAfter, while the peer is active): a path that comes back
	// is used again within about this (failback). One address, one ping a
	// second, for two minutes after a loss: cheap enough.
	LostRecheck = 1 * time.Second
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
	// and nothing has confirmed it for this long since that send, ping it
	// at once instead of waiting for the heartbeat. The daemon confirms a path with two-way
	// traffic from the device's counters about every 100 ms, so this leaves
	// one late read of slack; a path carrying only our sends is pinged about
	// this often, which such traffic dwarfs.
	SuspectAfter = 200 * time.Millisecond
	// LivenessWait is the least time a liveness ping (see SuspectAfter) is
	// given to be answered (at least twice the measured RTT) before packets
	// also go through the relay: a pong takes a few milliseconds on a
	// healthy path, so this is tens of times that, and a late pong costs
	// only duplicates until it comes. (100 ms made a node of the lab, at a
	// load average of 13 on 2 cores, doubt a healthy path twice a minute:
	// its pongs took 80-180 ms.) SuspectAfter + LivenessWait bounds the
	// failover gap of a busy path: 0.35 s plus the age of the last
	// confirmation.
	LivenessWait = 150 * time.Millisecond
	// RTTRecent is how long a pong's RTT stretches LivenessWait (see
	// answerBy): on a loaded node for the pongs while the load lasts, as
	// the heartbeats and liveness pings of a doubted path measure it
	// again.
	RTTRecent = TrustDirect
	// ReplyWindow: a send this soon after the arrival that last confirmed
	// the path is taken for a reply to it, and arms no liveness ping (see
	// OnDirectSend). A side that only answers (a server, the far end of a
	// ping) would otherwise ping after every answer: nothing answers an
	// answer until the next request, a second later at a request a second.
	// If the path is cut the requester's own sends go unanswered, and the
	// relay brings its doubt here (OnRelayRecv); a side that also sends on
	// its own arms at its first send past the window, so loss is noticed
	// at most this much later. Replies on a node take well under a
	// millisecond; this leaves room for a loaded one.
	ReplyWindow = 30 * time.Millisecond
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
