package bind

import (
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/packet"
)

// Relay sends WireGuard packets to a peer through the relay servers.
type Relay interface {
	SendPacket(dst wgtypes.Key, pkt []byte) error
	// Connected reports whether a relay is connected now: whether
	// SendPacket can take a packet at all.
	Connected() bool
}

// SetRelay sets the relay the Bind sends through (nil: none).
func (b *Bind) SetRelay(r Relay) {
	if r == nil {
		b.relay.Store(nil)
		return
	}
	b.relay.Store(&r)
}

// relayQueueLen bounds the packets received from relays and not yet read by
// the device; beyond it they are dropped, as a full socket buffer would.
const relayQueueLen = 1024

type relayed struct {
	pkt *packet.Packet // from relayPool; back to it once read
	ep  *peerEndpoint
}

// DeliverRelayed hands a WireGuard packet that arrived through a relay from
// the peer with key src to the device. Packets from unknown peers are
// dropped. pkt is copied, into a pooled buffer, so relayed traffic makes no
// garbage per packet.
func (b *Bind) DeliverRelayed(src wgtypes.Key, pkt []byte) {
	b.peersMu.Lock()
	e, ok := b.byKey[src]
	b.peersMu.Unlock()
	if !ok || !IsWireGuard(pkt) {
		return
	}
	e.relayed.Add(1)
	r := relayed{pkt: b.relayPool.Get(len(pkt)), ep: e}
	copy(r.pkt.Data, pkt)
	select {
	case b.relayQ <- r:
		return
	default:
	}
	// Full: wait a little before dropping. The caller is a relay client's
	// read loop, so waiting slows the relay's stream to this node, and TCP
	// carries that back to the sender, instead of a loss TCP inside the
	// tunnel would answer by backing off. Bounded, so a device that stopped
	// reading costs each packet at most relayDeliverWait.
	b.mu.Lock()
	done := b.done // nil while closed: then only the timer ends the wait
	b.mu.Unlock()
	t := time.NewTimer(relayDeliverWait)
	defer t.Stop()
	select {
	case b.relayQ <- r:
	case <-t.C:
		b.relayPool.Put(r.pkt)
	case <-done:
		b.relayPool.Put(r.pkt)
	}
}

// relayDeliverWait bounds how long a relayed packet waits for room in the
// queue to the device (the relay's own queues wait as long).
const relayDeliverWait = 50 * time.Millisecond

// receiveRelayed is the ReceiveFunc for packets from relays. It blocks until
// at least one packet is queued, then takes as many as fit in the batch.
func (b *Bind) receiveRelayed(done <-chan struct{}) conn.ReceiveFunc {
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var first relayed
		select {
		case first = <-b.relayQ:
		case <-done:
			return 0, net.ErrClosed
		}
		n := 0
		put := func(r relayed) {
			sizes[n] = copy(packets[n], r.pkt.Data)
			eps[n] = r.ep
			b.relayPool.Put(r.pkt)
			n++
		}
		put(first)
		for n < len(packets) {
			select {
			case r := <-b.relayQ:
				put(r)
			default:
				return n, nil
			}
		}
		return n, nil
	}
}

// addrOfVirtual resolves a virtual endpoint address to its peer endpoint.
func (b *Bind) peerByVirtual(a netip.Addr) (*peerEndpoint, bool) {
	b.peersMu.Lock()
	defer b.peersMu.Unlock()
	e, ok := b.byVirt[a]
	return e, ok
}
