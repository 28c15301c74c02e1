package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/packet"
	"github.com/wirelace/wirelace/relay/internal/sendq"
	"github.com/wirelace/wirelace/relay/protocol"
)

// connError says why an authenticated connection ended: a fixed reason for
// the metric, whether to tell the client (ServerClose) first, and the cause.
type connError struct {
	reason string
	notify bool
	err    error
}

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// Reasons the relay itself closes a connection; the text goes to the client.
var (
	errReplaced = &connError{reason: closeReplaced, notify: true, err: errors.New("replaced by a newer connection with the same WireGuard key")}
	errRevoked  = &connError{reason: closeRevoked, notify: true, err: errors.New("MeshNode removed, its Node removed, or its control key changed")}
	errShutdown = &connError{reason: closeShutdown, notify: true, err: errors.New("relay shutting down")}
)

// clientConn is one client connection. Before bind it is only a handshake
// in progress; after, it is the session for one WireGuard key.
type clientConn struct {
	s      *Server
	conn   net.Conn
	r      *protocol.Reader
	w      *protocol.Writer // the handshake's; a session writes through bw
	bw     *protocol.BatchWriter
	remote string
	log    *slog.Logger

	// ctx ends the session; its cause says why. The read loop, the write
	// loop and anyone closing the connection from outside all go through
	// it, so the first reason wins and is the one reported.
	ctx    context.Context
	cancel context.CancelCauseFunc

	claimed     wgtypes.Key // the key the handshake claimed, for logs
	key, ctl    wgtypes.Key // bound identity
	connectedAt time.Time
	limiter     *rate.Limiter // nil when unlimited
	// out holds what other clients' readers forward to this client until
	// the write loop takes it; bounded by Config.QueueDepth and QueueBytes.
	// Readers of other sessions may still hold c after it ends: pushes to
	// a closed queue fail, they do not panic.
	out        *sendq.Queue
	queueDrops atomic.Uint64
}

func newClientConn(s *Server, ctx context.Context, conn net.Conn) *clientConn {
	remote := conn.RemoteAddr().String()
	c := &clientConn{
		s:    s,
		conn: conn,
		// No read buffer before authentication: the handshake reads one
		// frame, byte-exact, so bind's buffered Reader loses nothing.
		r:      protocol.NewReader(conn),
		w:      protocol.NewWriter(bufio.NewWriterSize(conn, handshakeBufSize)),
		remote: remote,
		log:    s.log.With("remote", remote),
	}
	c.ctx, c.cancel = context.WithCancelCause(ctx)
	return c
}

// bind turns an authenticated handshake into a session, which is when the
// connection gets its socket buffers and its queue: an unauthenticated one
// must cost next to nothing. The handshake's writer was flushed, and its
// reader read nothing past ClientAuth, so nothing is lost in the swap.
func (c *clientConn) bind(id identity) {
	c.key, c.ctl = id.wg, id.ctl
	c.log = c.log.With("peer", shortKey(c.key))
	c.connectedAt = time.Now()
	c.r = protocol.NewReader(bufio.NewReaderSize(c.conn, readBufSize))
	c.bw = protocol.NewBatchWriter(c.conn, writeBufSize)
	c.out = sendq.New(sendq.Options{
		MaxLen:   c.s.cfg.QueueDepth,
		MaxBytes: c.s.cfg.QueueBytes,
		Wait:     c.s.cfg.forwardWait,
		Holdoff:  c.s.cfg.stallHoldoff,
	})
	if c.s.cfg.Rate != Unlimited {
		c.limiter = rate.NewLimiter(rate.Limit(c.s.cfg.Rate), c.s.cfg.Burst)
	}
}

// tellRefused sends a ServerAuthError with msg, best effort, still under the
// handshake deadline.
func (c *clientConn) tellRefused(msg string) {
	if c.w.WriteFrame(protocol.TypeServerAuthError, protocol.AppendReason(nil, msg)) == nil {
		c.w.Flush()
	}
}

// close ends the session for reason; it returns at once, and the loops wind
// down within goodbyeTimeout.
func (c *clientConn) close(reason *connError) {
	c.cancel(reason)
}

// run serves the session until it ends, then reports why.
func (c *clientConn) run() {
	// Whatever ends the session also bounds a write stuck on a client
	// that stopped reading, so the writer gets to say goodbye and close.
	stop := context.AfterFunc(c.ctx, func() { c.conn.SetWriteDeadline(time.Now().Add(goodbyeTimeout)) })
	defer stop()

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	c.cancel(c.readLoop())
	<-writerDone
	c.s.unregister(c)
	// Wakes readers waiting for room here; what was queued is dropped.
	for _, p := range c.out.Close() {
		c.s.pool.Put(p)
	}

	cause := context.Cause(c.ctx)
	if errors.Is(cause, context.Canceled) {
		cause = errShutdown
	}
	var ce *connError
	if !errors.As(cause, &ce) {
		ce = &connError{reason: closeReadError, err: cause}
	}
	c.s.metrics.disconnects.WithLabelValues(ce.reason).Inc()
	lvl := slog.LevelInfo
	if ce.reason == closeProtocol {
		lvl = slog.LevelWarn
	}
	c.log.Log(context.Background(), lvl, "client disconnected", "reason", ce.reason, "err", ce.err,
		"duration", time.Since(c.connectedAt).Round(time.Millisecond), "dropped", c.queueDrops.Load())
}

// readLoop reads the client's frames and forwards its packets until the
// connection fails or the session ends.
func (c *clientConn) readLoop() error {
	var deadlineSet time.Time
	told := make(map[wgtypes.Key]time.Time) // PeerGone notices sent, by destination
	for {
		if c.r.DeadlineCheckDue() {
			if now := time.Now(); now.Sub(deadlineSet) >= c.s.readRefresh {
				if err := c.conn.SetReadDeadline(now.Add(c.s.cfg.IdleTimeout)); err != nil {
					return &connError{reason: closeReadError, err: err}
				}
				deadlineSet = now
			}
		}
		typ, p, err := c.r.ReadFrame()
		if err != nil {
			return c.readError(err)
		}
		switch typ {
		case protocol.TypeSendPacket:
			dst, pkt, err := protocol.ParsePacket(p)
			if err != nil {
				return &connError{reason: closeProtocol, err: err}
			}
			if err := c.throttle(protocol.HeaderLen + len(p)); err != nil {
				return err
			}
			c.forward(dst, pkt, told)
		case protocol.TypeKeepAlive:
			if len(p) != 0 {
				return &connError{reason: closeProtocol, err: fmt.Errorf("KeepAlive with %d bytes: %w", len(p), protocol.ErrMalformed)}
			}
		default:
			return &connError{reason: closeProtocol, err: fmt.Errorf("unexpected %v frame from a client", typ)}
		}
	}
}

func (c *clientConn) readError(err error) error {
	if c.ctx.Err() != nil {
		return err // the session already ended; its cause stands
	}
	switch {
	case errors.Is(err, io.EOF):
		return &connError{reason: closeClient, err: err}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &connError{reason: closeIdle, err: fmt.Errorf("nothing received for %v", c.s.cfg.IdleTimeout)}
	case errors.Is(err, protocol.ErrFrameTooLarge), errors.Is(err, io.ErrUnexpectedEOF):
		return &connError{reason: closeProtocol, err: err}
	}
	return &connError{reason: closeReadError, err: err}
}

// throttle applies the client's rate limit by delaying the read of its next
// frame: TCP flow control then slows the client down, instead of the relay
// discarding data that already crossed the client's uplink.
func (c *clientConn) throttle(n int) error {
	if c.limiter == nil || c.limiter.AllowN(time.Now(), n) {
		return nil
	}
	c.s.metrics.rateLimited.Inc()
	if err := c.limiter.WaitN(c.ctx, n); err != nil {
		if c.ctx.Err() != nil {
			return context.Cause(c.ctx)
		}
		return &connError{reason: closeRateLimiter, err: err}
	}
	return nil
}

// forward queues pkt for dst. When dst's queue is full it waits, boundedly,
// for dst's writer to make room: backpressure (see the package comment and
// forwardWait). A full queue whose writer freed nothing within forwardWait
// drops, as a congested UDP path would.
func (c *clientConn) forward(dst wgtypes.Key, pkt []byte, told map[wgtypes.Key]time.Time) {
	d, ok := c.s.lookup(dst)
	if !ok {
		c.s.metrics.dropUnknown.Inc()
		c.peerGone(dst, told)
		return
	}
	p := c.s.pool.Get(len(pkt))
	copy(p.Data, pkt)
	// The source is the key this connection authenticated, never anything
	// the client sent: receivers rely on it to tell peers apart.
	p.Key = c.key
	if d.out.TryPush(p) {
		return
	}
	c.s.metrics.backpressure.Inc()
	if !d.out.Push(c.ctx, p) {
		c.s.pool.Put(p)
		d.queueDrops.Add(1)
		c.s.metrics.dropFull.Inc()
	}
}

// peerGone tells the client that dst is not connected, so it can stop
// using this relay for dst, but at most once per peerGoneInterval per dst.
func (c *clientConn) peerGone(dst wgtypes.Key, told map[wgtypes.Key]time.Time) {
	now := time.Now()
	if t, ok := told[dst]; ok && now.Sub(t) < peerGoneInterval {
		return
	}
	if len(told) >= peerGoneMemory {
		clear(told) // forgetting only costs a few extra notices
	}
	told[dst] = now
	p := c.s.pool.Get(0)
	p.Kind, p.Key = packet.PeerGone, dst
	// Advisory: when the queue is full, drop it rather than wait.
	if !c.out.TryPush(p) {
		c.s.pool.Put(p)
	}
}

// writeLoop drains the queue onto the socket a batch at a time (one write
// deadline, one vectored write, one release of queue room per batch), and
// keeps a quiet connection alive. It closes the connection when it ends.
func (c *clientConn) writeLoop() {
	defer c.conn.Close()
	ka := time.NewTicker(c.s.keepAlive)
	defer ka.Stop()

	var (
		wrote bool
		batch []*packet.Packet
	)
	fail := func(err error) {
		c.cancel(&connError{reason: closeWriteError, err: err})
	}
	for {
		select {
		case <-c.out.Ready():
			batch = c.out.Take(batch[:0], protocol.MaxBatchFrames, protocol.MaxBatchBytes)
			if len(batch) == 0 {
				continue
			}
			err := c.writeBatch(batch)
			clear(batch) // the pool has them back; keep no references
			if err != nil {
				fail(err)
				return
			}
			wrote = true
		case <-ka.C:
			if !wrote {
				err := c.armWrite()
				if err == nil {
					err = c.bw.AddFrame(protocol.TypeKeepAlive, nil)
				}
				if err == nil {
					err = c.bw.Flush()
				}
				if err != nil {
					fail(err)
					return
				}
				// Quiet for a keepalive interval: most sessions are, most
				// of the time, and need no batch memory meanwhile.
				c.bw.Idle()
				batch = nil
			}
			wrote = false
		case <-c.ctx.Done():
			c.goodbye()
			return
		}
	}
}

// writeBatch writes batch under one write deadline, then returns its room
// to the queue and its buffers to the pool, whether or not the write
// succeeded.
func (c *clientConn) writeBatch(batch []*packet.Packet) error {
	var frames, bytes int
	err := c.armWrite()
	for _, p := range batch {
		if err != nil {
			break
		}
		if p.Kind == packet.PeerGone {
			err = c.bw.AddFrame(protocol.TypePeerGone, p.Key[:])
			continue
		}
		frames++
		bytes += len(p.Data)
		err = c.bw.AddPacket(protocol.TypeRecvPacket, p.Key, p.Data)
	}
	if err == nil {
		err = c.bw.Flush()
	} else {
		c.bw.Reset() // the session is over: write nothing more, keep no payloads
	}
	for _, p := range batch {
		c.s.pool.Put(p)
	}
	c.out.Release()
	if err == nil {
		c.s.metrics.frames.Add(float64(frames))
		c.s.metrics.bytes.Add(float64(bytes))
	}
	return err
}

// armWrite gives the next batch WriteTimeout from now to leave. Every
// batch, KeepAlives included, gets its own deadline: one left from an
// earlier write would expire under a later one (a KeepAlive a while after
// the last packet) and drop a healthy quiet session. Once the session is
// ending the goodbye deadline stands instead.
func (c *clientConn) armWrite() error {
	if c.ctx.Err() != nil {
		return nil
	}
	return c.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
}

// goodbye tells the client why the relay is closing the session, when that
// is worth telling, so its log says more than "connection reset".
func (c *clientConn) goodbye() {
	cause := context.Cause(c.ctx)
	if errors.Is(cause, context.Canceled) {
		cause = errShutdown
	}
	var ce *connError
	if !errors.As(cause, &ce) || !ce.notify {
		return
	}
	c.conn.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
	if c.bw.AddFrame(protocol.TypeServerClose, protocol.AppendReason(nil, ce.err.Error())) == nil {
		c.bw.Flush()
	}
}
