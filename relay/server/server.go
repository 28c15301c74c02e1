// Package server is wirelace-relay's relay: it authenticates mesh nodes (see
// relay/protocol for the handshake) and forwards WireGuard datagrams between
// them by destination key. It sees only ciphertext.
//
// Every client gets a reader goroutine, which forwards what the client sends,
// and a writer goroutine, which drains the client's bounded queue onto its
// socket under write deadlines. Readers never block on another client: a full
// queue drops the packet, as a congested UDP path would. So a client that
// stops reading costs only its own packets, never the relay or other clients.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/relay/internal/packet"
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
	// DefaultQueueDepth is the per-client send queue length in packets.
	DefaultQueueDepth = 256
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
	readBufSize  = 32 << 10
	writeBufSize = 32 << 10
	// goodbyeTimeout bounds the ServerClose frame written to a client the
	// relay closes, so a stuck client cannot hold up shutdown.
	goodbyeTimeout = time.Second
	// deadlineRefresh is how stale a read or write deadline may get before
	// it is moved: setting one per frame would cost a timer update each.
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
	IdleTimeout  time.Duration
	AuthTimeout  time.Duration
	WriteTimeout time.Duration
}

func (c *Config) setDefaults() error {
	if c.Members == nil {
		return errors.New("relay server needs a Members")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Rate < 0 || c.Burst < 0 || c.QueueDepth < 0 || c.IdleTimeout < 0 || c.AuthTimeout < 0 || c.WriteTimeout < 0 {
		return errors.New("relay server limits must not be negative")
	}
	set := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	set(&c.IdleTimeout, DefaultIdleTimeout)
	set(&c.AuthTimeout, DefaultAuthTimeout)
	set(&c.WriteTimeout, DefaultWriteTimeout)
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = DefaultQueueDepth
	}
	if c.Rate != Unlimited && c.Burst < protocol.MaxFrameLen {
		return fmt.Errorf("burst of %d bytes is below the largest frame (%d bytes), which could then never pass", c.Burst, protocol.MaxFrameLen)
	}
	return nil
}

// Server relays packets between authenticated mesh nodes.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	rand    io.Reader
	pool    packet.Pool

	// clients maps a WireGuard key to its one *clientConn. A sync.Map
	// because it is read for every packet and written only when clients
	// come and go.
	clients sync.Map

	// kick wakes the membership sweep; capacity 1 coalesces bursts of
	// changes into one sweep.
	kick chan struct{}

	readRefresh, writeRefresh time.Duration
	keepAlive                 time.Duration
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
		cfg:          cfg,
		log:          cfg.Logger,
		metrics:      m,
		rand:         rand.Reader,
		kick:         make(chan struct{}, 1),
		readRefresh:  min(deadlineRefresh, cfg.IdleTimeout/8),
		writeRefresh: min(deadlineRefresh, cfg.WriteTimeout/8),
		keepAlive:    cfg.IdleTimeout / keepAliveDivisor,
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
		wg.Go(func() { s.handle(ctx, conn) })
	}
}

// handle runs one connection from handshake to close.
func (s *Server) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	start := time.Now()
	c := newClientConn(s, ctx, conn)
	id, err := s.authenticate(ctx, c)
	if err != nil {
		s.logAuthFailure(ctx, c, err)
		return
	}
	c.bind(id)
	s.register(c)
	if err := s.accept(c); err != nil {
		c.cancel(&connError{reason: closeWriteError, err: err})
		s.unregister(c)
		s.metrics.disconnects.WithLabelValues(closeWriteError).Inc()
		c.log.Info("client disconnected", "reason", closeWriteError, "err", err)
		return
	}
	s.metrics.handshakeTime.Observe(time.Since(start).Seconds())
	c.run()
}

// register makes c the connection for its key, replacing any older one.
func (s *Server) register(c *clientConn) {
	old, loaded := s.clients.Swap(c.key, c)
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
}

// unregister removes c unless a newer connection has replaced it.
func (s *Server) unregister(c *clientConn) {
	if s.clients.CompareAndDelete(c.key, c) {
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

// ClientInfo describes one connected client.
type ClientInfo struct {
	Key         wgtypes.Key
	RemoteAddr  string
	ConnectedAt time.Time
	// QueueLen is the number of packets waiting to be written to it.
	QueueLen int
	// Dropped counts packets for it that were dropped because its queue
	// was full: a client that reads too slowly.
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
			QueueLen:    len(c.out),
			Dropped:     c.queueDrops.Load(),
		})
		return true
	})
	return out
}

// shortKey is the form of a key in logs: the first 8 characters of its
// base64, the same as MeshNode.spec.keyPrefix.
func shortKey(k wgtypes.Key) string { return k.String()[:8] }
