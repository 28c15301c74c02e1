package client

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/wirelace/wirelace/internal/packet"
	"github.com/wirelace/wirelace/relay/internal/sendq"
	"github.com/wirelace/wirelace/relay/protocol"
)

// session is one authenticated connection. Its queue belongs to it, not to
// the Client, so packets queued for a session that died are never sent on
// the next one: they would only be stale.
type session struct {
	out *sendq.Queue
}

// connect runs one connection from dial to end. It returns how long the
// session was established (zero if it never was) and why it ended.
func (c *Client) connect(ctx context.Context) (time.Duration, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	r := protocol.NewReader(bufio.NewReaderSize(conn, readBufSize))
	w := protocol.NewWriter(bufio.NewWriterSize(conn, handshakeBufSize))
	announced, err := c.handshake(ctx, conn, r, w)
	if err != nil {
		return 0, err
	}
	idle, clamped := sessionIdle(announced)
	if clamped {
		c.log.Debug("relay announced an idle timeout out of range; clamped", "announced", announced, "idle_timeout", idle)
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Ending the session closes the socket, which unblocks both loops.
	stop := context.AfterFunc(sctx, func() { conn.Close() })
	defer stop()

	s := &session{out: sendq.New(sendq.Options{
		MaxLen:   c.cfg.QueueDepth,
		MaxBytes: queueBytes,
		Wait:     sendWait,
		Holdoff:  stallHoldoff,
	})}
	start := time.Now()
	c.session.Store(s)
	c.log.Info("relay connected", "remote", conn.RemoteAddr().String())
	c.notify(State{Connected: true})

	var wg sync.WaitGroup
	bw := protocol.NewBatchWriter(conn, writeBufSize)
	wg.Go(func() { cancel(c.writeLoop(sctx, s, conn, bw, idle/keepAliveDivisor)) })
	cancel(c.readLoop(conn, r, idle))
	wg.Wait()
	c.session.Store(nil)
	// Wakes senders waiting for room; what was queued is stale now.
	for _, p := range s.out.Close() {
		c.pool.Put(p)
	}
	return time.Since(start), context.Cause(sctx)
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	dial := c.cfg.Dial
	if dial == nil {
		d := net.Dialer{Timeout: dialTimeout}
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial relay: %w", err)
	}
	if c.cfg.TLS == nil {
		return conn, nil
	}
	cfg := c.cfg.TLS.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(c.cfg.Addr); err == nil {
			cfg.ServerName = host
		}
	}
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with relay: %w", err)
	}
	return tc, nil
}

// handshake authenticates (see relay/protocol) and returns the relay's idle
// timeout.
func (c *Client) handshake(ctx context.Context, conn net.Conn, r *protocol.Reader, w *protocol.Writer) (time.Duration, error) {
	if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return 0, fmt.Errorf("relay handshake: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	r.SetMaxPayload(protocol.MaxHandshakePayloadLen)
	typ, p, err := r.ReadFrame()
	if err != nil {
		if errors.Is(err, protocol.ErrFrameTooLarge) {
			err = fmt.Errorf("%w (is this a wirelace relay?)", err)
		}
		return 0, fmt.Errorf("read ServerHello: %w", err)
	}
	if typ != protocol.TypeServerHello {
		return 0, fmt.Errorf("relay sent %v instead of ServerHello (is this a wirelace relay?)", typ)
	}
	hello, err := protocol.ParseServerHello(p)
	if err != nil {
		return 0, fmt.Errorf("read ServerHello: %w", err)
	}
	auth, err := protocol.NewClientAuth(hello, c.cfg.PublicKey, c.cfg.ControlKey, rand.Reader)
	if err != nil {
		return 0, err
	}
	if err := w.WriteFrame(protocol.TypeClientAuth, auth.Append(nil)); err != nil {
		return 0, fmt.Errorf("send ClientAuth: %w", err)
	}
	if err := w.Flush(); err != nil {
		return 0, fmt.Errorf("send ClientAuth: %w", err)
	}
	typ, p, err = r.ReadFrame()
	if err != nil {
		return 0, fmt.Errorf("read relay's answer to ClientAuth: %w", err)
	}
	var idle time.Duration
	switch typ {
	case protocol.TypeServerAuthOK:
		if idle, err = protocol.ParseAuthOK(p); err != nil {
			return 0, err
		}
	case protocol.TypeServerAuthError:
		return 0, &RefusedError{Addr: c.cfg.Addr, Reason: protocol.ParseReason(p)}
	default:
		return 0, fmt.Errorf("relay answered ClientAuth with %v", typ)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return 0, fmt.Errorf("relay handshake: %w", err)
	}
	r.SetMaxPayload(protocol.MaxPayloadLen)
	return idle, nil
}

// readLoop delivers what the relay sends until the connection fails. A relay
// that sends nothing, not even a KeepAlive, for its own idle timeout is gone.
func (c *Client) readLoop(conn net.Conn, r *protocol.Reader, idle time.Duration) error {
	refresh := min(deadlineRefresh, idle/8)
	var deadlineSet time.Time
	for {
		if r.DeadlineCheckDue() {
			if now := time.Now(); now.Sub(deadlineSet) >= refresh {
				if err := conn.SetReadDeadline(now.Add(idle)); err != nil {
					return fmt.Errorf("read from relay: %w", err)
				}
				deadlineSet = now
			}
		}
		typ, p, err := r.ReadFrame()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("relay sent nothing for %v", idle)
			}
			return fmt.Errorf("read from relay: %w", err)
		}
		switch typ {
		case protocol.TypeRecvPacket:
			src, pkt, err := protocol.ParsePacket(p)
			if err != nil {
				return err
			}
			c.cfg.Receive(src, pkt)
		case protocol.TypeKeepAlive:
		case protocol.TypePeerGone:
			k, err := protocol.ParseKey(p)
			if err != nil {
				return err
			}
			if c.cfg.PeerGone != nil {
				c.cfg.PeerGone(k)
			}
		case protocol.TypeServerClose:
			return &ClosedError{Addr: c.cfg.Addr, Reason: protocol.ParseReason(p)}
		default:
			return fmt.Errorf("relay sent an unexpected %v frame", typ)
		}
	}
}

// writeLoop drains the session's queue a batch at a time, one vectored
// write each, and sends a KeepAlive when nothing else went out for a
// keepalive interval.
func (c *Client) writeLoop(ctx context.Context, s *session, conn net.Conn, bw *protocol.BatchWriter, keepAlive time.Duration) error {
	ka := time.NewTicker(keepAlive)
	defer ka.Stop()
	refresh := min(deadlineRefresh, writeTimeout/8)
	var (
		deadlineSet time.Time
		wrote       bool
		batch       []*packet.Packet
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.out.Ready():
			batch = s.out.Take(batch[:0], protocol.MaxBatchFrames, protocol.MaxBatchBytes)
			if len(batch) == 0 {
				continue
			}
			if now := time.Now(); now.Sub(deadlineSet) >= refresh {
				if err := conn.SetWriteDeadline(now.Add(writeTimeout)); err != nil {
					return fmt.Errorf("write to relay: %w", err)
				}
				deadlineSet = now
			}
			err := c.writeBatch(s, bw, batch)
			clear(batch)
			if err != nil {
				return fmt.Errorf("write to relay: %w", err)
			}
			wrote = true
		case <-ka.C:
			if !wrote {
				if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
					return fmt.Errorf("write to relay: %w", err)
				}
				deadlineSet = time.Now()
				if err := bw.AddFrame(protocol.TypeKeepAlive, nil); err != nil {
					return fmt.Errorf("write to relay: %w", err)
				}
				if err := bw.Flush(); err != nil {
					return fmt.Errorf("write to relay: %w", err)
				}
				bw.Idle() // quiet: no batch memory needed meanwhile
				batch = nil
			}
			wrote = false
		}
	}
}

// writeBatch writes batch, then returns its room to the queue and its
// buffers to the pool, whether or not the write succeeded.
func (c *Client) writeBatch(s *session, bw *protocol.BatchWriter, batch []*packet.Packet) error {
	var err error
	for _, p := range batch {
		if err = bw.AddPacket(protocol.TypeSendPacket, p.Key, p.Data); err != nil {
			break
		}
	}
	if err == nil {
		err = bw.Flush()
	} else {
		bw.Reset() // the session is over: write nothing more, keep no payloads
	}
	for _, p := range batch {
		c.pool.Put(p)
	}
	s.out.Release()
	return err
}
