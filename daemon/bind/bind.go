// Package bind provides wirelaced's conn.Bind: the one UDP socket of a node,
// which carries WireGuard, STUN and path probes.
package bind

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/netipx"
	"github.com/wirelace/wirelace/internal/packet"
)

// Handler is called for packets that are not WireGuard, on the receive
// goroutine, before the next batch is read. It must not retain pkt (the buffer
// is reused for the next batch) and should return quickly.
type Handler func(pkt []byte, from netip.AddrPort)

// Bind wraps conn.StdNetBind so wireguard-go keeps its batched, GSO/GRO receive
// and send path (a Bind without batching measured 0.15x stock throughput here),
// while packets that are not WireGuard are diverted to a handler instead of
// reaching the device.
type Bind struct {
	log     *slog.Logger
	std     conn.Bind
	handler atomic.Pointer[Handler]

	mu   sync.Mutex
	port uint16        // bound port; 0 while closed
	done chan struct{} // closed by Close, ends receiveRelayed

	relay     atomic.Pointer[Relay]
	relayQ    chan relayed
	relayPool packet.Pool // the buffers of relayQ's packets

	peersMu   sync.Mutex
	byKey     map[wgtypes.Key]*peerEndpoint
	byVirt    map[netip.Addr]*peerEndpoint
	nextIndex uint32
	// sessions maps the session indices of every peer (see learnSession)
	// to the peer, for the receive path.
	sessions atomic.Pointer[map[uint32]*peerEndpoint]

	// epoch counts the reads of the device's receive counters (NextEpoch):
	// the receive path stamps each peer's first message of an epoch (see
	// Arrival). It starts at 1, so that 0 means no epoch.
	epoch atomic.Uint64
	// arrived is the latest epoch in which a message for a peer's session
	// arrived directly (see ArrivedSince).
	arrived atomic.Uint64
	// now is the clock of those stamps (time.Now; see SetClock).
	now func() time.Time
}

var _ conn.Bind = (*Bind)(nil)

// New returns a closed Bind. wireguard-go opens it when the device comes up.
func New(log *slog.Logger) *Bind {
	if log == nil {
		log = slog.Default()
	}
	b := &Bind{
		log:    log,
		std:    conn.NewStdNetBind(),
		relayQ: make(chan relayed, relayQueueLen),
		byKey:  map[wgtypes.Key]*peerEndpoint{},
		byVirt: map[netip.Addr]*peerEndpoint{},
	}
	b.epoch.Store(1)
	b.now = time.Now
	return b
}

// SetClock sets the clock that stamps arrivals (see Arrival), which must
// be the one their reader compares them with: tests that run the path
// manager on a fake clock set it, before Open.
func (b *Bind) SetClock(now func() time.Time) { b.now = now }

// SetHandler sets the function that receives non-WireGuard packets. It may be
// called at any time; nil drops such packets.
func (b *Bind) SetHandler(h Handler) {
	if h == nil {
		b.handler.Store(nil)
		return
	}
	b.handler.Store(&h)
}

// Open opens the IPv4 and IPv6 sockets on port (0 = random) and returns their
// receive functions, wrapped so that non-WireGuard packets go to the handler.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	fns, actual, err := b.std.Open(port)
	if err != nil {
		return nil, 0, fmt.Errorf("open udp port %d: %w", port, err)
	}
	wrapped := make([]conn.ReceiveFunc, len(fns), len(fns)+1)
	for i, fn := range fns {
		wrapped[i] = b.demux(fn)
	}
	b.done = make(chan struct{})
	wrapped = append(wrapped, b.receiveRelayed(b.done))
	b.port = actual
	// Debug, not Info: wireguard-go closes and reopens the bind on every
	// listen-port change and link up/down.
	b.log.Debug("udp socket open", "port", actual)
	return wrapped, actual, nil
}

// Close closes the sockets. The receive functions then return net.ErrClosed.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()

	wasOpen := b.port != 0
	b.port = 0
	if b.done != nil {
		close(b.done)
		b.done = nil
	}
	if err := b.std.Close(); err != nil {
		return fmt.Errorf("close udp sockets: %w", err)
	}
	if wasOpen {
		b.log.Debug("udp socket closed")
	}
	return nil
}

// SetMark sets SO_MARK on the sockets, so that policy routing can keep the
// node's own WireGuard, STUN and probe packets off the mesh link.
func (b *Bind) SetMark(mark uint32) error {
	if err := b.std.SetMark(mark); err != nil {
		return fmt.Errorf("set fwmark %#x: %w", mark, err)
	}
	return nil
}

// Send sends WireGuard packets. It is the device's hot path: for a peer's
// virtual endpoint it adds one type switch and two atomic loads to
// StdNetBind's batched send (errors are returned unwrapped, as the device
// logs them itself).
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if e, ok := ep.(*peerEndpoint); ok {
		return b.sendPeer(bufs, e)
	}
	return b.std.Send(bufs, ep)
}

// ParseEndpoint parses "ip:port": a virtual peer endpoint (see PeerEndpoint)
// or a plain address for the inner bind.
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err == nil && IsVirtual(ap) {
		if e, ok := b.peerByVirtual(ap.Addr().Unmap()); ok {
			return e, nil
		}
		return nil, fmt.Errorf("endpoint %s: no such peer endpoint", s)
	}
	return b.std.ParseEndpoint(s)
}

// BatchSize is the inner bind's batch size (conn.IdealBatchSize on Linux).
func (b *Bind) BatchSize() int {
	return b.std.BatchSize()
}

// SendTo sends one non-WireGuard datagram (STUN, probe) from the WireGuard
// socket, so that NAT mappings learnt with it are the ones WireGuard uses.
func (b *Bind) SendTo(pkt []byte, to netip.AddrPort) error {
	if b.Port() == 0 {
		return fmt.Errorf("send to %s: %w", to, net.ErrClosed)
	}
	// Unmap so that an IPv4 destination written as ::ffff:a.b.c.d leaves from
	// the IPv4 socket, where StdNetBind expects it.
	ep := &conn.StdNetEndpoint{AddrPort: netipx.UnmapAddrPort(to)}
	if err := b.std.Send([][]byte{pkt}, ep); err != nil {
		return fmt.Errorf("send to %s: %w", to, err)
	}
	return nil
}

// Port returns the bound port, or 0 while the bind is closed.
func (b *Bind) Port() uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.port
}
