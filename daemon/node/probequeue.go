package node

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/daemon/probe"
)

// Probes are opened off the Bind's receive goroutine, which also carries
// WireGuard: the receive path only rate-limits a probe and copies it into a
// bounded queue, and one goroutine (paths.drainProbes) opens and handles
// them. A flood of probes then costs WireGuard a copy per packet, never the
// cryptography, and what the flood can make that goroutine do is bounded by
// the rate limits.
const (
	// probeQueueLen bounds the probes received and not yet handled: more
	// than all peers send in one burst (an attempt pings every candidate
	// of a peer at once), so only a flood fills it; beyond it probes are
	// dropped, as a full socket buffer would drop them.
	probeQueueLen = 256
	// probeRate and probeBurst are the token bucket of one source address
	// (or, through the relay, one sending node). A node sends another a few
	// probes a second at most (heartbeats, liveness pings, their pongs,
	// bursts of at most path.MaxCandidates pings per attempt), and several
	// nodes behind one NAT share its address; twenty times that is still
	// nothing to handle, while a flood from one source gets no further.
	probeRate  = rate.Limit(100)
	probeBurst = 200
	// probeRateTotal bounds the probes handled per second from all sources
	// together, so a flood from many (spoofed) sources costs a bounded
	// share of a core too: at about 2 µs per probe, a percent.
	probeRateTotal  = rate.Limit(5000)
	probeBurstTotal = 5000
	// maxLimitedSources bounds the token buckets kept; see sourceLimiter.
	maxLimitedSources = 4096
	// dropWarnEvery spaces the warnings about dropped probes, which a
	// flood would otherwise turn into a flood of logs.
	dropWarnEvery = time.Minute
)

// queuedProbe is one probe waiting to be handled, held by value so that
// queueing allocates nothing.
type queuedProbe struct {
	buf      [probe.MaxSize]byte
	n        int
	from     netip.AddrPort // the UDP source, for a probe that came directly
	viaRelay bool
	relaySrc wgtypes.Key // the relay-authenticated sender's WireGuard key
}

// probeStats counts what became of probes, for metrics and logs.
type probeStats struct {
	queued      atomic.Uint64
	rateLimited atomic.Uint64
	queueFull   atomic.Uint64
	invalid     atomic.Uint64 // too large, unknown sender, not authentic, malformed
	stale       atomic.Uint64 // outside the clock window
	replayed    atomic.Uint64
	tunnelled   atomic.Uint64 // "direct" from an address routed into the mesh
	wrongRelay  atomic.Uint64 // relayed by another node's session
}

// register exports the drop counts as wirelace_probe_dropped_total.
func (s *probeStats) register(reg *prometheus.Registry) {
	for reason, c := range map[string]*atomic.Uint64{
		"rate_limited":       &s.rateLimited,
		"queue_full":         &s.queueFull,
		"invalid":            &s.invalid,
		"stale":              &s.stale,
		"replayed":           &s.replayed,
		"tunnelled":          &s.tunnelled,
		"wrong_relay_source": &s.wrongRelay,
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "wirelace_probe_dropped_total",
			Help:        "Path probes dropped before or instead of being handled, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(c.Load()) }))
	}
}

// probeQueue is the rate-limited, bounded queue between the receive paths
// (UDP and relay) and the goroutine that handles probes.
type probeQueue struct {
	ch      chan queuedProbe
	now     func() time.Time
	direct  *sourceLimiter[netip.Addr]
	relayed *sourceLimiter[wgtypes.Key]
	total   *rate.Limiter
	stats   probeStats

	// Last warning about drops; used by the path loop only.
	warnedAt    time.Time
	warnedDrops uint64
}

func newProbeQueue(now func() time.Time) *probeQueue {
	return &probeQueue{
		ch:      make(chan queuedProbe, probeQueueLen),
		now:     now,
		direct:  newSourceLimiter[netip.Addr](),
		relayed: newSourceLimiter[wgtypes.Key](),
		total:   rate.NewLimiter(probeRateTotal, probeBurstTotal),
	}
}

// push queues a probe unless its source is over its rate, or the queue is
// full. It runs on a receive goroutine: no cryptography, no allocation, no
// logging (a flood would make every line of it a cost). pkt is copied.
func (q *probeQueue) push(pkt []byte, from netip.AddrPort, viaRelay bool, relaySrc wgtypes.Key) {
	if len(pkt) > probe.MaxSize {
		q.stats.invalid.Add(1)
		return
	}
	now := q.now()
	var ok bool
	if viaRelay {
		ok = q.relayed.allow(relaySrc, now)
	} else {
		ok = q.direct.allow(from.Addr().Unmap(), now)
	}
	if !ok || !q.total.AllowN(now, 1) {
		q.stats.rateLimited.Add(1)
		return
	}
	item := queuedProbe{n: len(pkt), from: from, viaRelay: viaRelay, relaySrc: relaySrc}
	copy(item.buf[:], pkt)
	select {
	case q.ch <- item:
		q.stats.queued.Add(1)
	default:
		q.stats.queueFull.Add(1)
	}
}

// dropsToReport returns the probes dropped for load (rate limit, full
// queue) since the last report, if it is time for one.
func (q *probeQueue) dropsToReport(now time.Time) (limited, full uint64, report bool) {
	limited, full = q.stats.rateLimited.Load(), q.stats.queueFull.Load()
	if limited+full == q.warnedDrops || now.Sub(q.warnedAt) < dropWarnEvery {
		return 0, 0, false
	}
	q.warnedAt, q.warnedDrops = now, limited+full
	return limited, full, true
}

// sourceLimiter is a token bucket per source, bounded in memory: with
// maxLimitedSources buckets, those that are full again (sources quiet for
// a while) are forgotten, and if none is, all are. Only a flood from that
// many sources at once gets there, and the total rate limit and the queue
// bound it then.
type sourceLimiter[K comparable] struct {
	mu      sync.Mutex
	buckets map[K]*rate.Limiter
}

func newSourceLimiter[K comparable]() *sourceLimiter[K] {
	return &sourceLimiter[K]{buckets: map[K]*rate.Limiter{}}
}

func (l *sourceLimiter[K]) allow(k K, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= maxLimitedSources {
			for k, b := range l.buckets {
				if b.TokensAt(now) >= probeBurst {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= maxLimitedSources {
				clear(l.buckets)
			}
		}
		b = rate.NewLimiter(probeRate, probeBurst)
		l.buckets[k] = b
	}
	return b.AllowN(now, 1)
}
