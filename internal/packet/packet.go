// Package packet recycles the buffers that carry datagrams through queues:
// the relay's per-connection queues, and a node's queue of relayed packets
// waiting for its WireGuard device. A queued packet has to outlive the frame
// it was read from, so it needs its own copy; pooling those copies by size
// keeps a busy relay path from turning every datagram into garbage.
package packet

import (
	"sync"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/relay/protocol"
)

// Buffer size classes: a WireGuard packet at a 1500-byte MTU, one at a
// 9000-byte jumbo MTU, and the largest datagram. Three classes keep a
// 1.4 KB packet from pinning a 64 KiB buffer while its queue waits.
const (
	smallSize  = 2048
	jumboSize  = 9216
	maxSize    = protocol.MaxPacketLen
	numClasses = 3
)

// class returns the size class for an n-byte datagram and its buffer size,
// or -1 for a datagram too large for any class.
func class(n int) (int, int) {
	switch {
	case n <= smallSize:
		return 0, smallSize
	case n <= jumboSize:
		return 1, jumboSize
	case n <= maxSize:
		return 2, maxSize
	}
	return -1, n
}

// Kind says what a queued item is, so control frames can share the queue
// (and its ordering) with packets.
type Kind uint8

const (
	// Data is a datagram to or from a peer.
	Data Kind = iota
	// PeerGone tells a client that Key is not reachable through the relay.
	PeerGone
)

// Packet is one queued item. Key is the peer: the source for a packet
// leaving the relay, the destination for one a client sends.
type Packet struct {
	Kind  Kind
	Key   wgtypes.Key
	Data  []byte // len is the datagram length; cap is the size class
	class int8   // size class, or -1 for buffers not from the pool
}

// Pool hands out Packets by size class. Its zero value is ready to use.
type Pool struct {
	pools [numClasses]sync.Pool
}

// Get returns a Packet whose Data has length n (at most
// protocol.MaxPacketLen) and unspecified contents.
func (p *Pool) Get(n int) *Packet {
	c, size := class(n)
	if c < 0 {
		return &Packet{Data: make([]byte, n), class: -1}
	}
	if v, ok := p.pools[c].Get().(*Packet); ok {
		v.Data = v.Data[:n]
		v.Kind = Data
		return v
	}
	return &Packet{Data: make([]byte, n, size), class: int8(c)}
}

// Put returns pkt to the pool; the caller must not use it afterwards.
func (p *Pool) Put(pkt *Packet) {
	if pkt == nil || pkt.class < 0 {
		return
	}
	p.pools[pkt.class].Put(pkt)
}
