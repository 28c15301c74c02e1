package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/relay/protocol"
)

// identity is what a handshake establishes: the WireGuard key the session is
// bound to and the control key that proved it.
type identity struct {
	wg, ctl wgtypes.Key
}

// authError is a failed handshake: a fixed reason for the metric, a message
// for the client (empty when the client is not worth answering), and the
// cause for the log.
type authError struct {
	reason string
	msg    string
	err    error
}

func (e *authError) Error() string { return fmt.Sprintf("%s: %v", e.reason, e.err) }
func (e *authError) Unwrap() error { return e.err }

// authenticate runs the server side of the handshake (see relay/protocol),
// up to but not including ServerAuthOK, under the auth timeout. TLS, if any, happens inside it too: a tls.Conn
// handshakes on first use.
func (s *Server) authenticate(ctx context.Context, c *clientConn) (identity, error) {
	if err := c.conn.SetDeadline(time.Now().Add(s.cfg.AuthTimeout)); err != nil {
		return identity{}, &authError{reason: authIOError, err: err}
	}
	// Shutdown must not wait for slow handshakes.
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	hello, eph, err := protocol.NewServerHello(s.rand)
	if err != nil {
		return identity{}, &authError{reason: authIOError, err: err}
	}
	defer clear(eph[:])
	if err := c.w.WriteFrame(protocol.TypeServerHello, hello.Append(make([]byte, 0, protocol.MaxHandshakePayloadLen))); err != nil {
		return identity{}, ioAuthError("send ServerHello", err)
	}
	if err := c.w.Flush(); err != nil {
		return identity{}, ioAuthError("send ServerHello", err)
	}

	c.r.SetMaxPayload(protocol.MaxHandshakePayloadLen)
	typ, p, err := c.r.ReadFrame()
	if err != nil {
		if errors.Is(err, protocol.ErrFrameTooLarge) {
			return identity{}, &authError{reason: authBadFrame, msg: "handshake frame too large", err: err}
		}
		return identity{}, ioAuthError("read ClientAuth", err)
	}
	if typ != protocol.TypeClientAuth {
		return identity{}, &authError{reason: authBadFrame, msg: "expected ClientAuth", err: fmt.Errorf("got %v before authenticating", typ)}
	}
	auth, err := protocol.ParseClientAuth(p)
	if err != nil {
		if errors.Is(err, protocol.ErrBadVersion) {
			return identity{}, &authError{reason: authBadVersion, msg: fmt.Sprintf("relay speaks protocol version %d", protocol.Version), err: err}
		}
		return identity{}, &authError{reason: authBadFrame, msg: "malformed ClientAuth", err: err}
	}
	c.claimed = auth.WireGuardKey

	// Trust the control key from the MeshNode, never the one claimed.
	ctl, ok := s.cfg.Members.Lookup(auth.WireGuardKey)
	if !ok {
		return identity{}, &authError{
			reason: authUnknownKey,
			msg:    fmt.Sprintf("WireGuard key %s is in no MeshNode of an existing Node (or in more than one MeshNode)", shortKey(auth.WireGuardKey)),
			err:    errors.New("key is not a mesh member"),
		}
	}
	if ctl != auth.ControlKey {
		return identity{}, &authError{
			reason: authControlMismatch,
			msg:    fmt.Sprintf("control key does not match the MeshNode of WireGuard key %s", shortKey(auth.WireGuardKey)),
			err:    fmt.Errorf("claimed control key %s, MeshNode has %s", shortKey(auth.ControlKey), shortKey(ctl)),
		}
	}
	if err := auth.Verify(hello, eph, ctl); err != nil {
		return identity{}, &authError{reason: authBadProof, msg: "proof of the control key does not verify", err: err}
	}

	return identity{wg: auth.WireGuardKey, ctl: ctl}, nil
}

// accept tells an authenticated client it is in and ends the handshake. The
// caller registers the client first, so that by the time the client can
// send, and its peers can send to it, the relay knows where it is.
func (s *Server) accept(c *clientConn) error {
	if err := c.w.WriteFrame(protocol.TypeServerAuthOK, protocol.AppendAuthOK(nil, s.cfg.IdleTimeout)); err != nil {
		return fmt.Errorf("send ServerAuthOK: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send ServerAuthOK: %w", err)
	}
	if err := c.conn.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("clear handshake deadline: %w", err)
	}
	c.r.SetMaxPayload(protocol.MaxPayloadLen)
	return nil
}

func ioAuthError(what string, err error) *authError {
	reason := authIOError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		reason = authTimeout
	case errors.Is(err, io.ErrUnexpectedEOF):
		reason = authBadFrame
	}
	return &authError{reason: reason, err: fmt.Errorf("%s: %w", what, err)}
}

// logAuthFailure counts a failed handshake, tells the client why when it got
// far enough to be told, and logs it: loudly for what looks like a
// misconfigured or hostile node, quietly for what a port scanner does, and
// either way at most once per RefusalLogInterval for each reason.
func (s *Server) logAuthFailure(ctx context.Context, c *clientConn, err error) {
	if ctx.Err() != nil {
		return // shutting down: not the client's failure
	}
	var ae *authError
	if !errors.As(err, &ae) {
		ae = &authError{reason: authIOError, err: err}
	}
	s.metrics.authFailures.WithLabelValues(ae.reason).Inc()
	if ae.msg != "" {
		c.tellRefused(ae.msg)
	}
	args := []any{"err", ae.err}
	if c.claimed != (wgtypes.Key{}) {
		args = append(args, "peer", shortKey(c.claimed))
	}
	switch ae.reason {
	case authUnknownKey, authControlMismatch, authBadProof, authBadVersion:
		s.refusals.log(c.log, slog.LevelWarn, ae.reason, "relay client refused", args...)
	default:
		s.refusals.log(c.log, slog.LevelDebug, ae.reason, "relay handshake failed", args...)
	}
}
