package bind

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/netipx"
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

// Route is where packets for a peer go now. Whether a relay is connected
// is looked at for each send, not when the route is set: a route set
// before the relay came up must not send a handshake into the void after
// it did (WireGuard retries a lost initiation only after 5 s).
type Route struct {
	// Direct is the peer's address to send to directly; invalid for none.
	Direct netip.AddrPort
	// Relay also (or only) sends through the relay, while one is connected.
	Relay bool
	// Guess is where packets go when neither Direct nor a connected relay
	// takes them: the peer's best published address, so that a peer on
	// the same network is reached before anything confirmed it.
	Guess netip.AddrPort
}

// peerEndpoint is the conn.Endpoint wireguard-go holds for a peer.
type peerEndpoint struct {
	key    wgtypes.Key
	virt   netip.AddrPort
	direct atomic.Pointer[conn.StdNetEndpoint] // nil: no direct path
	guess  atomic.Pointer[conn.StdNetEndpoint] // nil: none (see Route.Guess)
	relay  atomic.Bool

	// sessions are the session indices this node chose in the handshake
	// messages it sent the peer, newest last (guarded by Bind.peersMu).
	sessions []uint32

	// Traffic seen, for the path machine (see Activity): unix nanoseconds
	// of the last direct send; messages received directly for one of the
	// peer's sessions, the source of the latest and how often that source
	// changed; messages delivered by the relay.
	lastSend atomic.Int64
	relayed  atomic.Uint64
	// The last handshake message sent (see Activity.Handshake).
	hs atomic.Pointer[HandshakeSent]
	// The direct receive counts change together (a lock taken once per
	// run of messages in a batch, not per message), so that a reader never
	// sees messages from one source counted under another.
	recvMu      sync.Mutex
	recv        uint64
	recvFrom    netip.AddrPort
	recvSources uint64
	// arrivals are the peer's first direct messages in the last two epochs
	// that had any, newest first (see Arrival; guarded by recvMu).
	arrivals [2]Arrival
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
	storeAddr(&e.direct, r.Direct)
	storeAddr(&e.guess, r.Guess)
	e.relay.Store(r.Relay)
	return nil
}

// storeAddr points p at a (nil for an invalid one), keeping the endpoint
// it holds if that is a already.
func storeAddr(p *atomic.Pointer[conn.StdNetEndpoint], a netip.AddrPort) {
	if !a.IsValid() {
		p.Store(nil)
		return
	}
	a = netipx.UnmapAddrPort(a)
	if cur := p.Load(); cur == nil || cur.AddrPort != a {
		p.Store(&conn.StdNetEndpoint{AddrPort: a})
	}
}

// Activity is the traffic seen for a peer. None of it is authenticated:
// the Bind sees WireGuard messages before the device decrypts them, so
// anyone can make the receive counts grow with packets of the right shape.
// It says where the peer's packets would have come from if they were
// genuine; only the device's receive counters say whether any were.
type Activity struct {
	// LastSend is when a batch was last sent directly.
	LastSend time.Time
	// Recv counts WireGuard messages received directly (not through the
	// relay) that name one of the peer's sessions: their receiver index is
	// one this node chose in a handshake message it sent the peer.
	Recv uint64
	// RecvFrom is the source of the latest of them.
	RecvFrom netip.AddrPort
	// RecvSources counts the changes of that source (the first one
	// included), so that a reader comparing two Activities knows whether
	// all the messages in between came from RecvFrom.
	RecvSources uint64
	// Relayed counts WireGuard messages from the peer delivered by the
	// relay.
	Relayed uint64
	// Handshake is the last handshake message (initiation or response)
	// sent to the peer; zero before the first.
	Handshake HandshakeSent
	// Arrivals are the first messages counted in Recv in the last two
	// epochs (see NextEpoch) that had any, newest first; see FirstSince.
	Arrivals [2]Arrival
}

// Arrival stamps the first WireGuard message received directly for a
// peer's sessions after a read of the device's counters began an epoch
// (NextEpoch). Like everything the Bind counts it is unauthenticated; it
// only dates what a later read of the counters proves: every message whose
// decryption that read counts and the read before did not arrived at or
// after the stamp of the epoch the read before began. Except those the
// device still held, undecrypted, when that epoch began (its queues'
// latency, as when proofs were dated at the read): if only they grew the
// counter, a message spoofed from the peer's address and session after
// the epoch began dates the proof later than they arrived, by up to the
// time between the reads, once; the next read sees no growth.
type Arrival struct {
	// Epoch is the epoch it arrived in; 0 for none.
	Epoch uint64
	// At is when the Bind counted it.
	At time.Time
	// Sources is RecvSources just after it was counted: while RecvSources
	// still has this value, every message counted since came from RecvFrom.
	Sources uint64
	// Relayed is Relayed when it was counted.
	Relayed uint64
}

// FirstSince returns the first message counted in Recv in an epoch from
// epoch up to, not including, before: the first to arrive between the
// reads that began the two. ok is false when none did, or when that cannot
// be told (more epochs with messages came since than Arrivals keeps).
func (a Activity) FirstSince(epoch, before uint64) (Arrival, bool) {
	if epoch == 0 {
		return Arrival{}, false
	}
	newest, older := a.Arrivals[0], a.Arrivals[1]
	switch {
	case older.Epoch == epoch:
		return older, older.Epoch < before
	case older.Epoch > epoch:
		// Epochs from epoch up to older's may have had messages that
		// Arrivals no longer holds: the first is unknown.
		return Arrival{}, false
	case newest.Epoch >= epoch && newest.Epoch < before:
		// No message in any epoch from epoch to newest's: older would
		// hold it.
		return newest, true
	}
	return Arrival{}, false
}

// ArrivedSince reports whether a WireGuard message for one of a peer's
// sessions arrived directly in epoch or later: whether a read of the
// device's counters now could confirm a path (epoch 0, none, stands for
// the first). One atomic load.
func (b *Bind) ArrivedSince(epoch uint64) bool { return b.arrived.Load() >= max(epoch, 1) }

// NextEpoch begins a new epoch and returns it; the path manager calls it
// just before each read of the device's receive counters, so that the
// next read's growth can be dated (see Arrival). It costs the receive path
// one atomic load per batch, and one clock read per peer per epoch.
func (b *Bind) NextEpoch() uint64 { return b.epoch.Add(1) }

// HandshakeSent is what became of a handshake message sent to a peer.
type HandshakeSent struct {
	At time.Time
	// Relayed: it went through the relay.
	Relayed bool
	// Lost: it is not expected to arrive. It had no way but a guess (no
	// relay connected, no direct address), which is nowhere for a peer
	// behind a NAT; or it went through the relay, and the relay then said
	// the peer was not connected there (RelayCannotReach).
	Lost bool
}

// Activity reports the peer's traffic (zero for an unknown peer).
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
	e.recvMu.Lock()
	a.Recv, a.RecvFrom, a.RecvSources = e.recv, e.recvFrom, e.recvSources
	a.Arrivals = e.arrivals
	e.recvMu.Unlock()
	a.Relayed = e.relayed.Load()
	if hs := e.hs.Load(); hs != nil {
		a.Handshake = *hs
	}
	return a
}

// RelayCannotReach records that a relay said the peer is not connected to
// it: a handshake message last sent to the peer through the relay was
// dropped there. (With several relays the notice may come from one the
// handshake did not take; it is then lost only as far as the caller can
// tell, which costs at most an early retry.)
func (b *Bind) RelayCannotReach(key wgtypes.Key) {
	b.peersMu.Lock()
	e, ok := b.byKey[key]
	b.peersMu.Unlock()
	if !ok {
		return
	}
	for {
		hs := e.hs.Load()
		if hs == nil || !hs.Relayed || hs.Lost {
			return
		}
		lost := *hs
		lost.Lost = true
		if e.hs.CompareAndSwap(hs, &lost) {
			return
		}
	}
}

// sessionsKept is how many of a peer's session indices are remembered:
// wireguard-go holds at most three keypairs per peer (previous, current,
// next) plus the handshake in flight, each with the index from the
// handshake message that made it.
const sessionsKept = 4

// learnSession records the session index this node chose in a handshake
// message (initiation or response) sent to e: the peer's transport messages
// for that session carry it as their receiver index.
func (b *Bind) learnSession(e *peerEndpoint, bufs [][]byte) {
	if len(bufs) != 1 || len(bufs[0]) < 8 {
		return
	}
	switch binary.LittleEndian.Uint32(bufs[0]) {
	case device.MessageInitiationType, device.MessageResponseType:
	default:
		return
	}
	idx := binary.LittleEndian.Uint32(bufs[0][4:])
	b.peersMu.Lock()
	defer b.peersMu.Unlock()
	if b.byKey[e.key] != e || slices.Contains(e.sessions, idx) {
		return
	}
	if len(e.sessions) == sessionsKept {
		e.sessions = append(e.sessions[:0], e.sessions[1:]...)
	}
	e.sessions = append(e.sessions, idx)
	b.rebuildSessions()
}

// rebuildSessions republishes the map from session indices to peers that
// the receive path reads (copy on write: receives never lock). Callers hold
// peersMu. It runs once per handshake message sent, a few times a minute
// per peer.
func (b *Bind) rebuildSessions() {
	idx := make(map[uint32]*peerEndpoint, sessionsKept*len(b.byKey))
	for _, e := range b.byKey {
		for _, s := range e.sessions {
			idx[s] = e
		}
	}
	b.sessions.Store(&idx)
}

// receiverIndex returns the receiver index of a WireGuard message that has
// one chosen by the receiver (response, cookie reply, transport data).
// Initiations name no session of ours.
func receiverIndex(pkt []byte) (uint32, bool) {
	switch pkt[0] {
	case device.MessageResponseType:
		return binary.LittleEndian.Uint32(pkt[8:]), true
	case device.MessageCookieReplyType, device.MessageTransportType:
		return binary.LittleEndian.Uint32(pkt[4:]), true
	}
	return 0, false
}

// noteRecv counts n WireGuard messages received directly from addr for the
// session idx, if it is one of a peer's, in epoch (see Arrival). Called
// once per run of messages of one source and session in a batch.
func (b *Bind) noteRecv(addr netip.AddrPort, idx uint32, n uint64, epoch uint64) {
	m := b.sessions.Load()
	if m == nil {
		return
	}
	e, ok := (*m)[idx]
	if !ok {
		return
	}
	e.recvMu.Lock()
	if e.recvSources == 0 || e.recvFrom != addr {
		e.recvFrom = addr
		e.recvSources++
	}
	e.recv += n
	switch newest := e.arrivals[0].Epoch; {
	case epoch == newest:
	case epoch > newest:
		// The first message since a read began this epoch: one clock read
		// per peer per epoch, not per message.
		e.arrivals[1] = e.arrivals[0]
		e.arrivals[0] = Arrival{Epoch: epoch, At: b.now(), Sources: e.recvSources, Relayed: e.relayed.Load()}
		for a := b.arrived.Load(); a < epoch && !b.arrived.CompareAndSwap(a, epoch); a = b.arrived.Load() {
		}
	case epoch > e.arrivals[1].Epoch:
		// A batch of the other socket, read before the epoch's newest
		// began but counted after its first message: its own epoch's
		// first, and no later than that message.
		e.arrivals[1] = Arrival{Epoch: epoch, At: e.arrivals[0].At, Sources: e.recvSources, Relayed: e.relayed.Load()}
	}
	e.recvMu.Unlock()
}

// RemovePeer forgets a peer's endpoint.
func (b *Bind) RemovePeer(key wgtypes.Key) {
	b.peersMu.Lock()
	defer b.peersMu.Unlock()
	if e, ok := b.byKey[key]; ok {
		delete(b.byVirt, e.virt.Addr())
		delete(b.byKey, key)
		if len(e.sessions) > 0 {
			b.rebuildSessions()
		}
	}
}

// IsVirtual reports whether ap is a virtual peer endpoint.
func IsVirtual(ap netip.AddrPort) bool { return virtualPrefix.Contains(ap.Addr().Unmap()) }

// sendPeer sends a batch along the peer's route: directly, through the
// relay if the route has it and a relay is connected now, and to the
// route's guess when neither of those takes it. With nowhere to go the
// packets are dropped, as if lost: WireGuard retries its handshake.
//
// Transport data may go both ways at once (the replay window drops the
// second copy), but a handshake message goes exactly one way: two copies
// of an initiation arriving together can both be answered by wireguard-go,
// and the initiator then holds the session of one response while the
// responder kept the other's, which breaks the tunnel until the next
// handshake. While in doubt the relay is the surer way.
func (b *Bind) sendPeer(bufs [][]byte, e *peerEndpoint) error {
	handshake := IsHandshake(bufs)
	if handshake {
		b.learnSession(e, bufs)
	}
	var r Relay
	if e.relay.Load() {
		if p := b.relay.Load(); p != nil && (*p).Connected() {
			r = *p
		}
	}
	d := e.direct.Load()
	if d == nil && r == nil {
		d = e.guess.Load()
		if handshake {
			// Sent to a guess, if anywhere: for a peer behind a NAT, lost.
			e.hs.Store(&HandshakeSent{At: time.Now(), Lost: true})
		}
	} else if handshake {
		e.hs.Store(&HandshakeSent{At: time.Now(), Relayed: r != nil})
	}
	var err error
	if d != nil && !(r != nil && handshake) {
		err = b.std.Send(bufs, d)
		e.lastSend.Store(time.Now().UnixNano())
	}
	if r != nil {
		for _, buf := range bufs {
			// Relay errors are not the device's to act on (the relay
			// client reconnects by itself); dropping is what UDP would do.
			r.SendPacket(e.key, buf)
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
