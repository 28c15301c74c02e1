// Package server is wirelace-relay's relay: it authenticates mesh nodes (see
// relay/protocol for the handshake) and forwards WireGuard datagrams between
// them by destination key. It sees only ciphertext.
//
// Every client gets a reader goroutine, which forwards what the client sends,
// and a writer goroutine, which drains the client's bounded queue onto its
// socket, a batch per vectored write, under write deadlines.
//
// Backpressure, and why it is bounded. The datagrams are mostly WireGuard
// carrying TCP, and every datagram dropped here costs that TCP a
// retransmission and a halved window. So when a destination's queue is
// full, the reader forwarding to it waits for the destination's writer to
// make room (forwardWait, 50 ms, at most) instead of dropping: the sender's relay
// stream then slows to the pace its destination drains at, through TCP's
// own flow control, and the sender's node slows its WireGuard sends in turn
// (relay/client applies the same backpressure). The price is head-of-line
// blocking within one sender's stream: while it waits for a slow
// destination, its packets for other destinations wait too, since one TCP
// stream can only be slowed as a whole. That is what keeps it bounded: a
// destination whose socket took nothing for a whole forwardWait (its
// writer stuck in one write) counts as stalled for stallHoldoff (1 s), and
// packets for it that do not fit are then dropped at once, as a congested
// UDP path would. So a client that stops reading, or reads far
// slower than it is sent to, costs each of its senders at most one
// forwardWait per stallHoldoff, and other clients nothing; the write
// deadline closes it if it accepts nothing at all. Every wait on the way
// (the node's Send, the relay's forward, the node's receive hand-off) is
// bounded, so waits that happen to form a cycle between two nodes resolve
// into a drop within forwardWait rather than deadlock.
//
// Whoever can reach the relay can open connections, so what an
// unauthenticated one costs is bounded too: handshakes in progress are
// limited overall and per source address (beyond that a connection is closed
// as soon as it is accepted), and each holds only a goroutine and a
// handshake-sized buffer until it authenticates. Sessions are limited in
// number, and each session's queue in bytes as well as in packets.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/packet"
	"github.com/wirelace/wirelace/relay/protocol"
)

// Defaults for Config fields left zero.
const (
	// DefaultRate is the per-client send rate in bytes per second: generous
	// enough not to throttle a node's normal relay traffic, low enough that
	// one client cannot take a relay's whole uplink.
	DefaultRate = 100e6
	// DefaultBurst is the per-client token bucket size in bytes.
	DefaultBurst = 4 << 20
	// DefaultQueueDepth is the per-client send queue length in packets:
	// as many 1500-MTU datagrams (2 KiB buffers) as DefaultQueueBytes
	// holds, so that for ordinary traffic the byte limit is the one that
	// counts. (256 here, 360 KB of datagrams, was under 3 ms at 1 Gbit/s:
	// every burst of a TCP flow overflowed it.)
	DefaultQueueDepth = 2048
	// DefaultQueueBytes bounds the memory one client's queue holds,
	// counted as the capacity of the queued buffers. It is sized to the
	// bandwidth-delay product of a relayed flow: 1 Gbit/s for 33 ms, or
	// 100 Mbit/s across a 330 ms path, so one TCP flow can keep the path
	// full. Only 64 maximum datagrams fit, where a packet count alone
	// would let a sender pin 128 MiB per destination.
	DefaultQueueBytes = 4 << 20
	// DefaultMaxSessions is one session for each node of the largest
	// cluster Kubernetes supports (5000 nodes).
	DefaultMaxSessions = 5000
	// DefaultMaxHandshakes bounds connections accepted and not yet
	// authenticated. A handshake takes a round trip and a box open, so
	// this lets a whole cluster reconnect at once after a relay restart,
	// while a flood of idle connections holds at most this many goroutines
	// and handshake buffers (a few MiB) until the auth timeout.
	DefaultMaxHandshakes = 1024
	// DefaultMaxHandshakesPerIP bounds handshakes in progress from one IPv4
	// address or IPv6 /64: enough for a site of nodes behind one NAT
	// reconnecting together, few enough that one host cannot take all of
	// DefaultMaxHandshakes. A refused client retries within seconds.
	DefaultMaxHandshakesPerIP = 64
	// DefaultRefusalLogInterval is the least time between two log lines
	// for the same kind of refusal; the metrics count every one.
	DefaultRefusalLogInterval = 10 * time.Second
	// DefaultIdleTimeout closes a client that sent nothing, not even a
	// KeepAlive, for this long.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultAuthTimeout bounds the handshake (TLS included).
	DefaultAuthTimeout = 10 * time.Second
	// DefaultWriteTimeout closes a client whose socket accepted nothing for
	// this long: it has stopped reading, and its queue is only dropping.
	DefaultWriteTimeout = 10 * time.Second
)

// Unlimited as Config.Rate turns the per-client rate limit off.
const Unlimited = float64(rate.Inf)

// Internal limits and timings.
const (
	// readBufSize and writeBufSize are a session's socket buffers,
	// allocated once it has authenticated (the write side only while it is
	// busy: see protocol.BatchWriter.Idle). Before that a connection reads
	// without a buffer and writes through handshakeBufSize.
	readBufSize      = 32 << 10
	writeBufSize     = 32 << 10 // only where writev is not (TLS)
	handshakeBufSize = protocol.HeaderLen + protocol.MaxHandshakePayloadLen
	// forwardWait is the longest a reader waits for room in a full
	// destination queue before it drops the packet (see the package
	// comment). A destination that is reading frees room within one batch
	// write, a few milliseconds at any useful rate; one whose socket took
	// nothing for this long has stopped reading, or reads far slower than
	// it is sent to. Not much shorter: a node whose CPU is busy can leave
	// its relay connection unread for tens of milliseconds, and that
	// should cost a wait, not stallHoldoff of drops.
	forwardWait = 50 * time.Millisecond
	// stallHoldoff is how long a destination that took nothing within
	// forwardWait gets drops without waiting, so that a stalled client
	// costs its senders at most forwardWait/stallHoldoff (5%) of their
	// time, not a wait per packet.
	stallHoldoff = time.Second
	// goodbyeTimeout bounds the ServerClose frame written to a client the
	// relay closes, so a stuck client cannot hold up shutdown.
	goodbyeTimeout = time.Second
	// deadlineRefresh is how stale the read deadline may get before it is
	// moved: setting one per frame would cost a timer update each. (Write
	// deadlines are set per frame: see clientConn.armWrite.)
	deadlineRefresh = time.Second
	// minAcceptDelay and maxAcceptDelay bound the back-off after a failing
	// Accept (out of file descriptors, say), so the relay neither spins nor
	// stalls for long.
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
	// keepAliveDivisor: the relay sends a KeepAlive to an otherwise quiet
	// client every IdleTimeout/keepAliveDivisor, well inside the client's
	// own read timeout.
	keepAliveDivisor = 3
	// peerGoneInterval is how often a client is told about the same
	// unreachable destination, and peerGoneMemory how many destinations a
	// connection remembers telling it about.
	peerGoneInterval = 5 * time.Second
	peerGoneMemory   = 1024
)

// Config configures a Server. Zero durations and sizes mean the defaults.
type Config struct {
	// Members decides who may connect. Required.
	Members Members
	// Logger receives the relay's logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the relay's metrics; nil leaves them unregistered.
	Registry prometheus.Registerer

	Rate         float64 // bytes per second per client; Unlimited for none
	Burst        int     // bytes; at least protocol.MaxFrameLen
	QueueDepth   int     // packets per client
	QueueBytes   int     // buffer bytes per client queue; at least protocol.MaxPacketLen
	IdleTimeout  time.Duration
	AuthTimeout  time.Duration
	WriteTimeout time.Duration

	MaxSessions        int // authenticated clients
	MaxHandshakes      int // connections not yet authenticated
	MaxHandshakesPerIP int // of those, from one IPv4 address or IPv6 /64
	// RefusalLogInterval is the least time between log lines for the same
	// kind of refusal.
	RefusalLogInterval time.Duration

	// forwardWait and stallHoldoff, when set, replace the constants of
	// the same names: tests stretch them so that a slow test machine
	// cannot turn backpressure into drops.
	forwardWait, stallHoldoff time.Duration
}

func (c *Config) setDefaults() error {
	if c.Members == nil {
		return errors.New("relay server needs a Members")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	ints := []*int{&c.Burst, &c.QueueDepth, &c.QueueBytes, &c.MaxSessions, &c.MaxHandshakes, &c.MaxHandshakesPerIP}
	durations := []*time.Duration{&c.IdleTimeout, &c.AuthTimeout, &c.WriteTimeout, &c.RefusalLogInterval}
	if c.Rate < 0 || slices.ContainsFunc(ints, func(v *int) bool { return *v < 0 }) ||
		slices.ContainsFunc(durations, func(v *time.Duration) bool { return *v < 0 }) {
		return errors.New("relay server limits must not be negative")
	}
	setDefault(&c.Rate, DefaultRate)
	setDefault(&c.Burst, DefaultBurst)
	setDefault(&c.QueueDepth, DefaultQueueDepth)
	setDefault(&c.QueueBytes, DefaultQueueBytes)
	setDefault(&c.MaxSessions, DefaultMaxSessions)
	setDefault(&c.MaxHandshakes, DefaultMaxHandshakes)
	setDefault(&c.MaxHandshakesPerIP, DefaultMaxHandshakesPerIP)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.AuthTimeout, DefaultAuthTimeout)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.RefusalLogInterval, DefaultRefusalLogInterval)
	setDefault(&c.forwardWait, forwardWait)
	setDefault(&c.stallHoldoff, stallHoldoff)
	if c.Rate != Unlimited && c.Burst < protocol.MaxFrameLen {
		return fmt.Errorf("burst of %d bytes is below the largest frame (%d bytes), which could then never pass", c.Burst, protocol.MaxFrameLen)
	}
	if c.QueueBytes < protocol.MaxPacketLen {
		return fmt.Errorf("queue of %d bytes is below the largest datagram (%d bytes), which could then never be queued", c.QueueBytes, protocol.MaxPacketLen)
	}
	return nil
}

// setDefault replaces a zero *v with d.
func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Server relays packets between authenticated mesh nodes.
type Server struct {
	cfg       Config
	log       *slog.Logger
	metrics   *metrics
	rand      io.Reader
	pool      packet.Pool
	admission *admission
	refusals  *logLimiter

	// clients maps a WireGuard key to its one *clientConn. A sync.Map
	// because it is read for every packet and written only when clients
	// come and go. Writers hold mu, which also guards sessions, the
	// number of entries, against MaxSessions.
	clients  sync.Map
	mu       sync.Mutex
	sessions int

	// kick wakes the membership sweep; capacity 1 coalesces bursts of
	// changes into one sweep.
	kick chan struct{}

	readRefresh time.Duration
	keepAlive   time.Duration
}

// New checks cfg and returns a Server; it starts nothing until Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		log:         cfg.Logger,
		metrics:     m,
		rand:        rand.Reader,
		admission:   newAdmission(cfg.MaxHandshakes, cfg.MaxHandshakesPerIP),
		refusals:    newLogLimiter(cfg.RefusalLogInterval),
		kick:        make(chan struct{}, 1),
		readRefresh: min(deadlineRefresh, cfg.IdleTimeout/8),
		keepAlive:   cfg.IdleTimeout / keepAliveDivisor,
	}
	if n, ok := cfg.Members.(ChangeNotifier); ok {
		n.Subscribe(s.MembersChanged)
	}
	return s, nil
}

// Serve accepts relay clients on ln until ctx ends, then closes ln and every
// connection it accepted and returns nil once they are gone. TLS is the
// caller's choice: pass a tls.NewListener. Serve may run on several
// listeners at once; they share one set of clients.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // before wg.Wait: a failing listener takes its clients with it
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	wg.Go(func() { s.sweepLoop(ctx) })
	s.log.Info("relay listening", "addr", ln.Addr().String())

	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("relay listener %s closed: %w", ln.Addr(), err)
			}
			delay = min(max(2*delay, minAcceptDelay), maxAcceptDelay)
			s.log.Warn("accept failed; retrying", "addr", ln.Addr().String(), "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		src := sourceOf(conn.RemoteAddr())
		if reason := s.admission.acquire(src); reason != "" {
			s.refuseEarly(conn, reason)
			continue
		}
		s.metrics.handshakes.Inc()
		wg.Go(func() {
			s.handle(ctx, conn, func() {
				s.admission.release(src)
				s.metrics.handshakes.Dec()
			})
		})
	}
}

// refuseEarly closes a connection the handshake limits leave no room for,
// before it costs a goroutine or a byte of buffer. It says nothing to the
// client: over TLS, saying anything would mean a TLS handshake first.
func (s *Server) refuseEarly(conn net.Conn, reason string) {
	conn.Close()
	s.metrics.refused.WithLabelValues(reason).Inc()
	limit := s.cfg.MaxHandshakes
	if reason == refusedSourceHandshakes {
		limit = s.cfg.MaxHandshakesPerIP
	}
	s.refusals.log(s.log, slog.LevelWarn, reason, "relay connection refused: too many handshakes in progress",
		"remote", conn.RemoteAddr().String(), "limit", limit)
}

// handle runs one connection from handshake to close. done frees the
// connection's handshake slot (see handshake).
func (s *Server) handle(ctx context.Context, conn net.Conn, done func()) {
	defer conn.Close()
	c := newClientConn(s, ctx, conn)
	if s.handshake(ctx, c, done) {
		c.run()
	}
}

// handshake authenticates c and makes it a session. False means c failed or
// was refused, and that has been counted and logged. It calls done as soon
// as c is no longer a handshake in progress: when it failed, or once it is
// registered, so that a client told it is in never still counts against
// the handshake limits, and a session never does.
func (s *Server) handshake(ctx context.Context, c *clientConn, done func()) bool {
	start := time.Now()
	var once sync.Once
	release := func() { once.Do(done) }
	defer release()

	id, err := s.authenticate(ctx, c)
	if err != nil {
		s.logAuthFailure(ctx, c, err)
		return false
	}
	c.bind(id)
	if !s.register(c) {
		s.metrics.refused.WithLabelValues(refusedSessions).Inc()
		c.tellRefused(fmt.Sprintf("relay is full (%d sessions)", s.cfg.MaxSessions))
		s.refusals.log(c.log, slog.LevelWarn, refusedSessions, "relay client refused: session limit reached",
			"limit", s.cfg.MaxSessions)
		return false
	}
	release()
	if err := s.accept(c); err != nil {
		c.cancel(&connError{reason: closeWriteError, err: err})
		s.unregister(c)
		s.metrics.disconnects.WithLabelValues(closeWriteError).Inc()
		c.log.Info("client disconnected", "reason", closeWriteError, "err", err)
		return false
	}
	s.metrics.handshakeTime.Observe(time.Since(start).Seconds())
	return true
}

// register makes c the connection for its key, replacing any older one. It
// refuses (false) a key not yet connected when MaxSessions are; a connected
// key may always replace its session.
func (s *Server) register(c *clientConn) bool {
	s.mu.Lock()
	if _, exists := s.clients.Load(c.key); !exists && s.sessions >= s.cfg.MaxSessions {
		s.mu.Unlock()
		return false
	}
	old, loaded := s.clients.Swap(c.key, c)
	if !loaded {
		s.sessions++
	}
	s.mu.Unlock()
	if loaded {
		s.metrics.replaced.Inc()
		prev := old.(*clientConn)
		c.log.Info("client replaces an older connection with the same key", "old_remote", prev.remote)
		prev.close(errReplaced)
	} else {
		s.metrics.clients.Inc()
	}
	c.log.Info("client connected")
	// Membership may have changed between the handshake's lookup and
	// this point, and the sweep may already have run: check once more.
	if !s.entitled(c) {
		c.close(errRevoked)
	}
	return true
}

// unregister removes c unless a newer connection has replaced it.
func (s *Server) unregister(c *clientConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients.CompareAndDelete(c.key, c) {
		s.sessions--
		s.metrics.clients.Dec()
	}
}

// lookup returns the connection for a WireGuard key.
func (s *Server) lookup(k wgtypes.Key) (*clientConn, bool) {
	v, ok := s.clients.Load(k)
	if !ok {
		return nil, false
	}
	return v.(*clientConn), true
}

// MembersChanged asks the server to re-check every connected client against
// Members and to close those whose MeshNode is gone or whose control key
// changed. It never blocks; changes arriving during a check coalesce into
// one more check.
func (s *Server) MembersChanged() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Server) sweepLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.sweep()
		}
	}
}

func (s *Server) sweep() {
	s.clients.Range(func(_, v any) bool {
		if c := v.(*clientConn); !s.entitled(c) {
			c.close(errRevoked)
		}
		return true
	})
}

// entitled reports whether c's MeshNode still exists with the control key c
// authenticated with.
func (s *Server) entitled(c *clientConn) bool {
	ctl, ok := s.cfg.Members.Lookup(c.key)
	return ok && ctl == c.ctl
}

// Stats is a snapshot of what the relay holds.
type Stats struct {
	// Handshakes is the number of accepted connections whose handshake
	// is still in progress: what counts against MaxHandshakes.
	Handshakes int
	// Sessions is the number of authenticated clients.
	Sessions int
}

// Stats returns the relay's current load.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	sessions := s.sessions
	s.mu.Unlock()
	return Stats{Handshakes: s.admission.inFlight(), Sessions: sessions}
}

// ClientInfo describes one connected client.
type ClientInfo struct {
	Key         wgtypes.Key
	RemoteAddr  string
	ConnectedAt time.Time
	// QueueLen is the number of packets waiting to be written to it, and
	// QueueBytes the buffer memory they hold.
	QueueLen   int
	QueueBytes int
	// Dropped counts packets for it that were dropped because its queue
	// was full and did not drain in time: a client that reads too slowly.
	Dropped uint64
}

// Clients lists the connected, authenticated clients.
func (s *Server) Clients() []ClientInfo {
	var out []ClientInfo
	s.clients.Range(func(_, v any) bool {
		c := v.(*clientConn)
		out = append(out, ClientInfo{
			Key:         c.key,
			RemoteAddr:  c.remote,
			ConnectedAt: c.connectedAt,
			QueueLen:    c.out.Len(),
			QueueBytes:  int(c.out.Bytes()),
			Dropped:     c.queueDrops.Load(),
		})
		return true
	})
	return out
}

// shortKey is the form of a key in logs: the first 8 characters of its
// base64, the same as MeshNode.spec.keyPrefix.
func shortKey(k wgtypes.Key) string { return k.String()[:8] }
