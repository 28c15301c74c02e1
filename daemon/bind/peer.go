package bind

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Path selection lives in the Bind, per peer, in the way of Tailscale's
// magicsock: wireguard-go is told a fixed *virtual* endpoint for each peer,
// and the Bind decides, packet batch by packet batch, whether that means a
// direct address, the relay, or both. The device never learns real
// addresses (roaming is disabled), so a path change never touches the
// WireGuard session: it survives every switch, and the duplicate packets of
// a "both paths" phase are dropped by WireGuard's replay window.

// virtualPrefix holds the virtual endpoints: an address from a ULA range
// that no underlay uses, with the peer's index in the low 32 bits.
var virtualPrefix = netip.MustParsePrefix("fd7a:ce5e:ffff:ffff::/64")

// virtualPort is the port of every virtual endpoint; only the address counts.
const virtualPort = 1

// Route is where packets for a peer go now.
type Route struct {
	// Direct is the peer's address to send to directly; invalid for none.
	Direct netip.AddrPort
	// Relay also (or only) sends through the relay.
	Relay bool
}

// peerEndpoint is the conn.Endpoint wireguard-go holds for a peer.
type peerEndpoint struct {
	key    wgtypes.Key
	virt   netip.AddrPort
	direct atomic.Pointer[conn.StdNetEndpoint] // nil: no direct path
	relay  atomic.Bool

	// Direct traffic seen, for the path machine's loss detection: unix
	// nanoseconds of the last direct send and receive, and the receive's
	// source.
	lastSend atomic.Int64
	lastRecv atomic.Int64
	recvFrom atomic.Pointer[netip.AddrPort]
}

var _ conn.Endpoint = (*peerEndpoint)(nil)

func (e *peerEndpoint) ClearSrc()           {}
func (e *peerEndpoint) SrcToString() string { return "" }
func (e *peerEndpoint) DstToString() string { return e.virt.String() }
func (e *peerEndpoint) DstToBytes() []byte  { b, _ := e.virt.MarshalBinary(); return b }
func (e *peerEndpoint) DstIP() netip.Addr   { return e.virt.Addr() }
func (e *peerEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

// PeerEndpoint returns the virtual endpoint that stands for the peer with
// WireGuard key key, creating it (sending nowhere yet) if needed. The daemon
// configures it as the peer's endpoint.
func (b *Bind) PeerEndpoint(key wgtypes.Key) netip.AddrPort {
	b.peersMu.Lock()
	defer b.peersMu.Unlock()
	if e, ok := b.byKey[key]; ok {
		return e.virt
	}
	b.nextIndex++
	a := virtualPrefix.Addr().As16()
	binary.BigEndian.PutUint32(a[12:], b.nextIndex)
	e := &peerEndpoint{key: key, virt: netip.AddrPortFrom(netip.AddrFrom16(a), virtualPort)}
	b.byKey[key] = e
	b.byVirt[e.virt.Addr()] = e
	return e.virt
}

// SetRoute sets where the peer's packets go. It takes effect for the next
// batch wireguard-go sends.
func (b *Bind) SetRoute(key wgtypes.Key, r Route) error {
	b.peersMu.Lock()
	e, ok := b.byKey[key]
	b.peersMu.Unlock()
	if !ok {
		return fmt.Errorf("set route: unknown peer %s", key)
	}
	if r.Direct.IsValid() {
		d := netip.AddrPortFrom(r.Direct.Addr().Unmap(), r.Direct.Port())
		if cur := e.direct.Load(); cur == nil || cur.AddrPort != d {
			e.direct.Store(&conn.StdNetEndpoint{AddrPort: d})
		}
	} else {
		e.direct.Store(nil)
	}
	e.relay.Store(r.Relay)
	b.rebuildDirectIndex()
	return nil
}

// Activity is the direct traffic last seen for a peer.
type Activity struct {
	LastSend time.Time      // last batch sent directly
	LastRecv time.Time      // last WireGuard packet received from RecvFrom
	RecvFrom netip.AddrPort // a direct address of the peer
}

// Activity reports the peer's direct traffic (zero times for none).
func (b *Bind) Activity(key wgtypes.Key) Activity {
	b.peersMu.Lock()
	e, ok := b.byKey[key]
	b.peersMu.Unlock()
	var a Activity
	if !ok {
		return a
	}
	if t := e.lastSend.Load(); t != 0 {
		a.LastSend = time.Unix(0, t)
	}
	if t := e.lastRecv.Load(); t != 0 {
		a.LastRecv = time.Unix(0, t)
	}
	if f := e.recvFrom.Load(); f != nil {
		a.RecvFrom = *f
	}
	return a
}

// rebuildDirectIndex republishes the map from direct addresses to peers
// that the receive path reads (copy on write: receives never lock).
func (b *Bind) rebuildDirectIndex() {
	b.peersMu.Lock()
	defer b.peersMu.Unlock()
	idx := make(map[netip.AddrPort]*peerEndpoint, len(b.byKey))
	for _, e := range b.byKey {
		if d := e.direct.Load(); d != nil {
			idx[d.AddrPort] = e
		}
	}
	b.directIdx.Store(&idx)
}

// noteRecv records direct traffic from addr, if it is a peer's direct
// address. Called once per run of packets from one source in a batch.
func (b *Bind) noteRecv(addr netip.AddrPort, now int64) {
	idx := b.directIdx.Load()
	if idx == nil {
		return
	}
	e, ok := (*idx)[addr]
	if !ok {
		return
	}
	e.lastRecv.Store(now)
	if f := e.recvFrom.Load(); f == nil || *f != addr {
		a := addr // escapes only here, when the address changes
		e.recvFrom.Store(&a)
	}
}

// RemovePeer forgets a peer's endpoint.
func (b *Bind) RemovePeer(key wgtypes.Key) {
	b.peersMu.Lock()
	if e, ok := b.byKey[key]; ok {
		delete(b.byVirt, e.virt.Addr())
		delete(b.byKey, key)
	}
	b.peersMu.Unlock()
	b.rebuildDirectIndex()
}

// IsVirtual reports whether ap is a virtual peer endpoint.
func IsVirtual(ap netip.AddrPort) bool { return virtualPrefix.Contains(ap.Addr().Unmap()) }

// sendPeer sends a batch along the peer's route. With no route at all yet
// the packets are dropped, as if lost: WireGuard retries its handshake.
//
// Transport data may go both ways at once (the replay window drops the
// second copy), but a handshake message goes exactly one way: two copies
// of an initiation arriving together can both be answered by wireguard-go,
// and the initiator then holds the session of one response while the
// responder kept the other's, which breaks the tunnel until the next
// handshake. While in doubt the relay is the surer way.
func (b *Bind) sendPeer(bufs [][]byte, e *peerEndpoint) error {
	var err error
	viaRelay := e.relay.Load()
	if d := e.direct.Load(); d != nil && !(viaRelay && IsHandshake(bufs)) {
		err = b.std.Send(bufs, d)
		e.lastSend.Store(time.Now().UnixNano())
	}
	if viaRelay {
		if r := b.relay.Load(); r != nil {
			for _, buf := range bufs {
				// Relay errors are not the device's to act on (the relay
				// client reconnects by itself); dropping is what UDP would do.
				(*r).SendPacket(e.key, buf)
			}
		}
	}
	return err
}

// IsHandshake reports whether a send batch is a WireGuard handshake message
// (initiation, response or cookie reply), which wireguard-go always sends
// alone.
func IsHandshake(bufs [][]byte) bool {
	return len(bufs) == 1 && len(bufs[0]) >= 4 && bufs[0][0] >= 1 && bufs[0][0] <= 3 &&
		bufs[0][1] == 0 && bufs[0][2] == 0 && bufs[0][3] == 0
}
