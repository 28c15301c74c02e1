package server

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of the metrics below. They are fixed sets so that a hostile
// client cannot grow the metrics' cardinality.
const (
	// Why a packet was dropped.
	dropUnknownDestination = "unknown_destination"
	dropQueueFull          = "queue_full"

	// Why an authentication failed.
	authTimeout         = "timeout"
	authBadFrame        = "bad_frame"
	authBadVersion      = "bad_version"
	authUnknownKey      = "unknown_key"
	authControlMismatch = "control_key_mismatch"
	authBadProof        = "bad_proof"
	authIOError         = "io_error"

	// Why a connection was refused for want of capacity: before its
	// handshake (too many in progress, overall or from its source), or
	// after it (too many sessions).
	refusedHandshakes       = "handshake_limit"
	refusedSourceHandshakes = "source_handshake_limit"
	refusedSessions         = "session_limit"

	// Why an authenticated connection ended.
	closeClient      = "client_closed"
	closeIdle        = "idle_timeout"
	closeProtocol    = "protocol_error"
	closeReadError   = "read_error"
	closeWriteError  = "write_error"
	closeReplaced    = "replaced"
	closeRevoked     = "membership_revoked"
	closeShutdown    = "shutdown"
	closeRateLimiter = "rate_limiter"
)

// metrics are the relay's Prometheus metrics. They live on a Registry the
// caller passes in, so tests and embedders never share global state.
type metrics struct {
	clients       prometheus.Gauge
	handshakes    prometheus.Gauge
	refused       *prometheus.CounterVec
	frames        prometheus.Counter
	bytes         prometheus.Counter
	drops         *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	disconnects   *prometheus.CounterVec
	rateLimited   prometheus.Counter
	backpressure  prometheus.Counter
	replaced      prometheus.Counter
	handshakeTime prometheus.Histogram

	// Resolved once: looking a label up on every dropped packet would
	// cost a hash and a lock on the hot path.
	dropUnknown, dropFull prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "clients",
			Help: "Authenticated clients connected now.",
		}),
		handshakes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "handshakes_in_progress",
			Help: "Connections accepted and not yet authenticated.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "refused_connections_total",
			Help: "Connections refused for want of capacity, by limit: handshake_limit and source_handshake_limit (closed on accept, before any handshake), session_limit (after authenticating).",
		}, []string{"reason"}),
		frames: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "relayed_packets_total",
			Help: "Packets written to their destination client.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "relayed_bytes_total",
			Help: "Bytes of WireGuard datagrams written to their destination client (frame headers and keys excluded).",
		}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "dropped_packets_total",
			Help: "Packets the relay dropped, by reason.",
		}, []string{"reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "auth_failures_total",
			Help: "Connections refused during the handshake, by reason.",
		}, []string{"reason"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "disconnects_total",
			Help: "Authenticated connections that ended, by reason.",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "rate_limited_frames_total",
			Help: "Frames whose reading was delayed by the sender's rate limit.",
		}),
		backpressure: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "backpressure_waits_total",
			Help: "Packets that found their destination's queue full: the sender's reader waited for room (its stream slowed) unless the destination counted as stalled. Those dropped in the end count in dropped_packets_total.",
		}),
		replaced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "replaced_connections_total",
			Help: "Connections closed because the same WireGuard key authenticated again. A steady rise means two daemons share a key.",
		}),
		handshakeTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "wirelace", Subsystem: "relay", Name: "handshake_seconds",
			Help:    "Time from accepting a connection to a successful authentication.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
	}
	// Create the label values up front, so dashboards see zeros instead of
	// missing series.
	m.dropUnknown = m.drops.WithLabelValues(dropUnknownDestination)
	m.dropFull = m.drops.WithLabelValues(dropQueueFull)
	for _, r := range []string{authTimeout, authBadFrame, authBadVersion, authUnknownKey, authControlMismatch, authBadProof, authIOError} {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range []string{refusedHandshakes, refusedSourceHandshakes, refusedSessions} {
		m.refused.WithLabelValues(r)
	}
	for _, r := range []string{closeClient, closeIdle, closeProtocol, closeReadError, closeWriteError, closeReplaced, closeRevoked, closeShutdown, closeRateLimiter} {
		m.disconnects.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.clients, m.handshakes, m.refused, m.frames, m.bytes, m.drops, m.authFailures, m.disconnects, m.rateLimited, m.backpressure, m.replaced, m.handshakeTime} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("relay metrics already registered (one Server per Registry): %w", err)
			}
			return nil, fmt.Errorf("register relay metrics: %w", err)
		}
	}
	return m, nil
}
