// Package client is wirelaced's side of a relay: one Client keeps one
// authenticated session to one wirelace-relay, reconnecting with back-off
// whenever it drops, and moves WireGuard datagrams through it.
//
// The datagram path is built for the data plane: Send copies a packet into a
// pooled buffer and queues it, and one writer goroutine takes everything
// queued at a time and writes it with one vectored write: the batching
// happens there, whatever pace the senders call Send at. Received packets are
// handed to a callback straight from the read buffer, without a copy.
//
// A full queue pushes back rather than drops, as a UDP socket with a full
// send buffer blocks its writer: Send waits, up to sendWait (50 ms), for
// the writer to make room. The caller is wireguard-go's per-peer sender, so the wait
// slows WireGuard, and the TCP inside it, to the pace the relay connection
// carries, where a drop would cost that TCP a retransmission and half its
// window. A session whose socket took nothing for a whole sendWait (a
// relay that stopped reading) counts as stalled for stallHoldoff (1 s), and
// Send then drops at once, returning ErrQueueFull: a stalled relay costs
// the node at most one sendWait per stallHoldoff, never a hang.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/packet"
	"github.com/wirelace/wirelace/relay/protocol"
)

// DefaultQueueDepth is the default length of the send queue, in packets:
// queueBytes of 1500-MTU datagrams.
const DefaultQueueDepth = 2048

// Send queue sizing and backpressure (see the package comment).
const (
	// queueBytes bounds the buffer memory of the send queue: about the
	// bandwidth-delay product of a relayed flow (1 Gbit/s for 33 ms), so
	// that the queue absorbs the bursts of WireGuard's batches.
	queueBytes = 4 << 20
	// sendWait is the longest Send waits for room in a full queue: the
	// relay's forwardWait, for the same reasons.
	sendWait = 50 * time.Millisecond
	// stallHoldoff is how long a queue whose connection took nothing
	// within sendWait makes Send drop without waiting: at most 5% of a
	// sender's time goes to waiting for a stalled relay.
	stallHoldoff = time.Second
)

// Timeouts and reconnect back-off.
const (
	dialTimeout      = 10 * time.Second
	handshakeTimeout = 10 * time.Second // TLS and relay handshake together
	writeTimeout     = 10 * time.Second
	// minReconnectDelay is the first retry after a lost session: short,
	// because packets to relay-only peers are being dropped meanwhile.
	minReconnectDelay = 250 * time.Millisecond
	// minRefusedDelay is the first retry after the relay refused this
	// node: the relay is up, and a node is refused mostly at start-up,
	// until the relay's watch has seen the MeshNode the node has just
	// published (tens of milliseconds). Meanwhile the node's first
	// handshakes through the relay are lost, to it and from it, so a
	// refusal is retried sooner, and still doubles up to maxReconnectDelay.
	minRefusedDelay = 50 * time.Millisecond
	// maxReconnectDelay is low because a relay that comes back must carry
	// its relay-only pairs again within seconds; a failed attempt is one
	// TCP SYN, cheap even from a thousand nodes (the jitter spreads them).
	maxReconnectDelay = 3 * time.Second
	// stableAfter: a session that lasted this long resets the back-off.
	// Resetting on every successful handshake instead would let two
	// daemons that share a key (each replacing the other's session) spin.
	stableAfter = 30 * time.Second
	// reconnectJitter spreads reconnects of many nodes after a relay
	// restart, as a fraction of the delay either way.
	reconnectJitter = 0.25
	// defaultIdleTimeout is assumed when the relay announces none (see
	// sessionIdle for the bounds on one it announces).
	defaultIdleTimeout = 30 * time.Second
	// keepAliveDivisor: send a KeepAlive after IdleTimeout/keepAliveDivisor
	// without other traffic, so two can be lost before the relay gives up.
	keepAliveDivisor = 3
	// deadlineRefresh is how stale a socket deadline may get before it is
	// moved; moving it for every frame would cost a timer update each.
	deadlineRefresh = time.Second
	readBufSize     = 64 << 10
	writeBufSize    = 64 << 10 // used only where writev is not (TLS)
	// handshakeBufSize is the writer's buffer for the handshake, which
	// sends one small frame.
	handshakeBufSize = protocol.HeaderLen + protocol.MaxHandshakePayloadLen
)

// Errors from Send. Each means the packet was dropped.
var (
	ErrNotConnected = errors.New("relay not connected")
	ErrQueueFull    = errors.New("relay send queue full")
	ErrPacketSize   = errors.New("packet size out of range")
)

// RefusedError is the relay's refusal of this node, with its reason: not a
// mesh member (yet), wrong control key, and so on.
type RefusedError struct {
	Addr   string
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("relay %s refused this node: %s", e.Addr, e.Reason)
}

// ClosedError is the relay ending an established session, with its reason.
type ClosedError struct {
	Addr   string
	Reason string
}

func (e *ClosedError) Error() string {
	return fmt.Sprintf("relay %s closed the session: %s", e.Addr, e.Reason)
}

// State is the connection state of a Client.
type State struct {
	Connected bool
	// Err says why the last attempt or session failed; nil when Connected.
	Err error
}

// Config configures a Client.
type Config struct {
	// Addr is the relay's host:port.
	Addr string
	// TLS, when set, wraps the connection in TLS with this configuration
	// (RootCAs for a private CA); ServerName defaults to Addr's host.
	TLS *tls.Config
	// PublicKey is this node's WireGuard public key, the key its session is
	// bound to. The relay never needs the WireGuard private key.
	PublicKey wgtypes.Key
	// ControlKey is this node's control private key, whose public half is
	// in its MeshNode.
	ControlKey wgtypes.Key
	// Receive is called for every packet from the relay, from the Client's
	// read goroutine, with the peer's WireGuard key. pkt is valid only
	// until Receive returns; Receive must copy what it keeps. Required.
	//
	// When its consumer is full, Receive should wait for room, briefly
	// (tens of milliseconds at most), rather than drop: while it waits
	// nothing is read from the relay, TCP flow control slows the relay's
	// writes to this node, and the relay slows the senders in turn (see
	// relay/server), so the TCP inside WireGuard slows down instead of
	// losing packets. It must not block for long: everything relayed to
	// this node waits meanwhile, and a relay gives up on a node that
	// reads nothing for a while.
	Receive func(src wgtypes.Key, pkt []byte)
	// PeerGone, if set, is called when the relay says a destination is not
	// connected to it.
	PeerGone func(peer wgtypes.Key)
	// OnState, if set, is called from Run's goroutine when a session is
	// established, when it ends, and when an attempt fails.
	OnState func(State)
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
	// QueueDepth is the send queue length in packets; 0 means
	// DefaultQueueDepth. The queue also holds at most 4 MiB of buffers.
	QueueDepth int
	// Dial, if set, makes the TCP connection (through a proxy, or from
	// another network namespace); nil dials directly.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client is one node's connection to one relay.
type Client struct {
	cfg     Config
	log     *slog.Logger
	pool    packet.Pool
	session atomic.Pointer[session] // nil while disconnected
	running atomic.Bool
}

// New checks cfg and returns a Client; Run connects it.
func New(cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("relay client needs an address")
	}
	if cfg.Receive == nil {
		return nil, errors.New("relay client needs a Receive function")
	}
	if cfg.PublicKey == (wgtypes.Key{}) || cfg.ControlKey == (wgtypes.Key{}) {
		return nil, errors.New("relay client needs the node's WireGuard public key and control private key")
	}
	if cfg.QueueDepth < 0 {
		return nil, errors.New("relay client queue depth must not be negative")
	}
	if cfg.QueueDepth == 0 {
		cfg.QueueDepth = DefaultQueueDepth
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg: cfg,
		log: cfg.Logger.With("relay", cfg.Addr, "node", cfg.PublicKey.String()[:8]),
	}, nil
}

// Addr is the relay's address.
func (c *Client) Addr() string { return c.cfg.Addr }

// Connected reports whether a session is established now.
func (c *Client) Connected() bool { return c.session.Load() != nil }

// Send queues a WireGuard datagram for the peer with WireGuard key dst.
// When the queue is full it waits, up to sendWait, for room (see the
// package comment); an error means the packet was dropped. Safe for
// concurrent use.
func (c *Client) Send(dst wgtypes.Key, pkt []byte) error {
	if len(pkt) == 0 || len(pkt) > protocol.MaxPacketLen {
		return fmt.Errorf("%w: %d bytes", ErrPacketSize, len(pkt))
	}
	s := c.session.Load()
	if s == nil {
		return ErrNotConnected
	}
	p := c.pool.Get(len(pkt))
	copy(p.Data, pkt)
	p.Key = dst
	if !s.out.Push(context.Background(), p) {
		c.pool.Put(p)
		if s.out.Closed() {
			return ErrNotConnected
		}
		return ErrQueueFull
	}
	return nil
}

// Run connects to the relay and keeps reconnecting, with back-off, until ctx
// ends; then it closes the session and returns nil. Run may be called once.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("relay client is already running")
	}
	var delay time.Duration
	for {
		lasted, err := c.connect(ctx)
		if ctx.Err() != nil {
			c.log.Debug("relay client stopped")
			return nil
		}
		delay = retryDelay(delay, lasted, err)
		wait := jitter(delay)
		c.notify(State{Err: err})
		if lasted > 0 {
			c.log.Warn("relay session ended; reconnecting", "err", err, "after", lasted.Round(time.Millisecond), "retry_in", wait.Round(time.Millisecond))
		} else {
			c.log.Warn("relay connection failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// retryDelay is the back-off before the next attempt, after one that
// failed with err (or a session that ended with it after lasting lasted)
// following a back-off of prev.
func retryDelay(prev, lasted time.Duration, err error) time.Duration {
	if lasted >= stableAfter {
		prev = 0
	}
	floor := minReconnectDelay
	var refused *RefusedError
	if lasted == 0 && errors.As(err, &refused) {
		floor = minRefusedDelay
	}
	return min(max(2*prev, floor), maxReconnectDelay)
}

func (c *Client) notify(s State) {
	if c.cfg.OnState != nil {
		c.cfg.OnState(s)
	}
}

func jitter(d time.Duration) time.Duration {
	f := 1 + reconnectJitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
