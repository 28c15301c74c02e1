package bind

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestIsHandshake(t *testing.T) {
	cases := []struct {
		bufs [][]byte
		want bool
	}{
		{[][]byte{msg(1, 148)}, true},
		{[][]byte{msg(2, 92)}, true},
		{[][]byte{msg(3, 64)}, true},
		{[][]byte{msg(4, 32)}, false},
		{[][]byte{msg(1, 148), msg(1, 148)}, false}, // batches are transport data
		{[][]byte{{1, 0}}, false},
	}
	for i, c := range cases {
		if got := IsHandshake(c.bufs); got != c.want {
			t.Errorf("case %d: IsHandshake = %v, want %v", i, got, c.want)
		}
	}
}

// countingRelay counts what it is given; down says it is not connected.
type countingRelay struct {
	n    int
	down bool
}

func (r *countingRelay) SendPacket(wgtypes.Key, []byte) error { r.n++; return nil }
func (r *countingRelay) Connected() bool                      { return !r.down }

// relayedPeer is a closed Bind with relay r and one peer, whose key and
// endpoint it returns. A direct send through a closed Bind errors, which
// is how the tests see that one was attempted.
func relayedPeer(t *testing.T, r *countingRelay) (*Bind, wgtypes.Key, conn.Endpoint) {
	t.Helper()
	b := New(nil)
	b.SetRelay(r)
	k, _ := wgtypes.GeneratePrivateKey()
	key := k.PublicKey()
	virt := b.PeerEndpoint(key)
	if !IsVirtual(virt) {
		t.Fatalf("%s is not virtual", virt)
	}
	ep, err := b.ParseEndpoint(virt.String())
	if err != nil {
		t.Fatal(err)
	}
	return b, key, ep
}

// A handshake on a route with both paths goes through the relay only;
// transport data goes both ways.
func TestHandshakeTakesOnePath(t *testing.T) {
	r := &countingRelay{}
	b, key, ep := relayedPeer(t, r)
	if err := b.SetRoute(key, Route{Direct: netip.MustParseAddrPort("127.0.0.1:9"), Relay: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.Send([][]byte{msg(1, 148)}, ep); err != nil {
		t.Fatalf("handshake went direct too: %v", err)
	}
	if r.n != 1 {
		t.Fatalf("handshake relayed %d times, want 1", r.n)
	}
	if err := b.Send([][]byte{msg(4, 64)}, ep); err == nil {
		t.Fatal("transport data was not sent directly as well")
	}
	if r.n != 2 {
		t.Fatalf("transport data not relayed")
	}
}

// Whether the relay carries a peer's packets is decided at each send, not
// when the route was set: a handshake on a relay route goes to the guess
// while no relay is connected, and through the relay alone once one is,
// with no new route in between. A route with a direct address sends the
// handshake there while the relay is down.
func TestRelayLookedAtPerSend(t *testing.T) {
	r := &countingRelay{down: true}
	b, key, ep := relayedPeer(t, r)
	guess := netip.MustParseAddrPort("127.0.0.1:9")
	if err := b.SetRoute(key, Route{Relay: true, Guess: guess}); err != nil {
		t.Fatal(err)
	}
	if err := b.Send([][]byte{msg(1, 148)}, ep); err == nil || r.n != 0 {
		t.Fatalf("relay down: handshake not sent to the guess (err %v, relayed %d)", err, r.n)
	}
	r.down = false
	if err := b.Send([][]byte{msg(1, 148)}, ep); err != nil || r.n != 1 {
		t.Fatalf("relay up: handshake went to the guess too (err %v) or was relayed %d times, want once", err, r.n)
	}
	if err := b.Send([][]byte{msg(4, 64), msg(4, 64)}, ep); err != nil || r.n != 3 {
		t.Fatalf("relay up: data went to the guess too (err %v) or was relayed %d times in all, want 3", err, r.n)
	}
	r.down = true
	if err := b.SetRoute(key, Route{Direct: guess, Relay: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.Send([][]byte{msg(1, 148)}, ep); err == nil || r.n != 3 {
		t.Fatalf("relay down: handshake not sent directly (err %v, relayed %d)", err, r.n-3)
	}
}

// Activity says where the last handshake message went and whether it is
// known lost: to a guess, lost; through the relay, not, until the relay
// says the peer is not connected; directly, whatever the relay says.
func TestHandshakeSentRecorded(t *testing.T) {
	r := &countingRelay{down: true}
	b, key, ep := relayedPeer(t, r)
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	send := func(r Route) HandshakeSent {
		t.Helper()
		if err := b.SetRoute(key, r); err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		b.Send([][]byte{msg(1, 148)}, ep)
		hs := b.Activity(key).Handshake
		if hs.At.Before(before) {
			t.Fatalf("handshake sent at %v, before the send at %v", hs.At, before)
		}
		return hs
	}
	if hs := b.Activity(key).Handshake; !hs.At.IsZero() {
		t.Fatalf("a handshake recorded before any was sent: %+v", hs)
	}
	if hs := send(Route{Relay: true, Guess: addr}); !hs.Lost || hs.Relayed {
		t.Fatalf("to a guess with the relay down: %+v, want lost", hs)
	}
	r.down = false
	if hs := send(Route{Relay: true, Guess: addr}); hs.Lost || !hs.Relayed {
		t.Fatalf("through the relay: %+v, want relayed, not lost", hs)
	}
	b.RelayCannotReach(key)
	if hs := b.Activity(key).Handshake; !hs.Lost {
		t.Fatalf("the relay could not reach the peer: %+v, want lost", hs)
	}
	if hs := send(Route{Direct: addr}); hs.Lost || hs.Relayed {
		t.Fatalf("direct: %+v, want neither relayed nor lost", hs)
	}
	b.RelayCannotReach(key)
	if hs := b.Activity(key).Handshake; hs.Lost {
		t.Fatalf("a direct handshake counted lost by the relay's notice: %+v", hs)
	}
	// Transport data is no handshake message.
	at := b.Activity(key).Handshake.At
	b.Send([][]byte{msg(4, 64)}, ep)
	if got := b.Activity(key).Handshake.At; !got.Equal(at) {
		t.Fatalf("transport data recorded as a handshake")
	}
}

// withIndex returns pkt with idx written little-endian at off.
func withIndex(pkt []byte, off int, idx uint32) []byte {
	binary.LittleEndian.PutUint32(pkt[off:], idx)
	return pkt
}

// Direct receives are counted for a peer only when they name one of the
// sessions this node set up with it (the index it chose in a handshake
// message it sent the peer), whatever their source; packets naming other
// indices count for nobody.
func TestSessionAttribution(t *testing.T) {
	b := New(nil)
	k, _ := wgtypes.GeneratePrivateKey()
	key := k.PublicKey()
	ep, err := b.ParseEndpoint(b.PeerEndpoint(key).String())
	if err != nil {
		t.Fatal(err)
	}
	b.SetRoute(key, Route{Direct: netip.MustParseAddrPort("127.0.0.1:9")})
	b.Send([][]byte{withIndex(msg(1, 148), 4, 0xa1)}, ep) // our initiation
	b.Send([][]byte{withIndex(msg(2, 92), 4, 0xb2)}, ep)  // our response

	a := netip.MustParseAddrPort("198.51.100.7:51820")
	c := netip.MustParseAddrPort("203.0.113.9:4000")
	recv := func(batch ...fakePacket) Activity {
		t.Helper()
		packets, sizes, eps := newBuffers(len(batch))
		if _, err := b.demux(fakeReceive(batch))(packets, sizes, eps); err != nil {
			t.Fatal(err)
		}
		return b.Activity(key)
	}
	act := recv(
		fakePacket{withIndex(msg(4, 100), 4, 0xa1), a},
		fakePacket{withIndex(msg(4, 100), 4, 0xa1), a},
		fakePacket{withIndex(msg(4, 100), 4, 0xdead), c}, // someone else's session
		fakePacket{withIndex(msg(2, 92), 8, 0xb2), a},    // a response to our initiation
		fakePacket{withIndex(msg(1, 148), 4, 0xa1), c},   // an initiation names no session of ours
		fakePacket{withIndex(msg(4, 32), 4, 0xa1), a},
	)
	if act.Recv != 4 || act.RecvFrom != a || act.RecvSources != 1 {
		t.Fatalf("activity %+v, want 4 messages from %v, one source", act, a)
	}
	act = recv(fakePacket{withIndex(msg(4, 64), 4, 0xa1), c}, fakePacket{withIndex(msg(4, 64), 4, 0xa1), a})
	if act.Recv != 6 || act.RecvFrom != a || act.RecvSources != 3 {
		t.Fatalf("activity %+v, want 6 messages, latest from %v, three source changes", act, a)
	}
	b.DeliverRelayed(key, msg(4, 32))
	if act := b.Activity(key); act.Relayed != 1 || act.Recv != 6 {
		t.Fatalf("relayed: activity %+v", act)
	}

	// Only the latest sessions are kept.
	for i := range sessionsKept {
		b.Send([][]byte{withIndex(msg(1, 148), 4, uint32(0x100+i))}, ep)
	}
	if act := recv(fakePacket{withIndex(msg(4, 64), 4, 0xa1), a}); act.Recv != 6 {
		t.Fatalf("an old session still counts: %+v", act)
	}
	if act := recv(fakePacket{withIndex(msg(4, 64), 4, 0x100), a}); act.Recv != 7 {
		t.Fatalf("a new session does not count: %+v", act)
	}
	b.RemovePeer(key)
	if m := b.sessions.Load(); m != nil && len(*m) != 0 {
		t.Fatalf("sessions of a removed peer kept: %v", *m)
	}
}

// A relayed packet that finds the queue to the device full waits for room
// (briefly) instead of being dropped: the wait slows the relay's stream,
// which TCP carries back to the sender, where a drop would make TCP inside
// the tunnel back off.
func TestDeliverRelayedWaitsForRoom(t *testing.T) {
	b := New(nil)
	k, _ := wgtypes.GeneratePrivateKey()
	key := k.PublicKey()
	b.PeerEndpoint(key)
	for range cap(b.relayQ) {
		b.DeliverRelayed(key, msg(4, 64))
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		<-b.relayQ
	}()
	b.DeliverRelayed(key, msg(4, 64))
	if n := len(b.relayQ); n != cap(b.relayQ) {
		t.Fatalf("queue holds %d of %d: the packet was dropped instead of waiting for room", n, cap(b.relayQ))
	}
	// Nobody reads: the wait is bounded, and the packet dropped.
	start := time.Now()
	b.DeliverRelayed(key, msg(4, 64))
	if d := time.Since(start); d < relayDeliverWait/2 || d > 10*time.Second {
		t.Fatalf("a full queue nobody reads held the packet %v (want about %v)", d, relayDeliverWait)
	}
}

// Relayed packets reach the device intact and in order, whatever the
// caller does with its buffer after handing them over, though their
// copies' buffers are pooled and reused.
func TestDeliverRelayedCopies(t *testing.T) {
	b := New(nil)
	k, _ := wgtypes.GeneratePrivateKey()
	key := k.PublicKey()
	ep := b.PeerEndpoint(key)
	recv := b.receiveRelayed(make(chan struct{}))
	packets, sizes, eps := newBuffers(4)
	for i := range packets {
		packets[i] = make([]byte, 10000)
	}
	for round := range 3 {
		var sent [][]byte
		buf := make([]byte, 9000)
		for i, size := range []int{32, 1452, 2100, 9000} {
			pkt := buf[:size]
			binary.LittleEndian.PutUint32(pkt, 4)
			for j := 4; j < size; j++ {
				pkt[j] = byte(round*7 + i + j)
			}
			sent = append(sent, bytes.Clone(pkt))
			b.DeliverRelayed(key, pkt)
			clear(buf) // the caller reuses its buffer at once
		}
		n, err := recv(packets, sizes, eps)
		if err != nil || n != len(sent) {
			t.Fatalf("round %d: read %d packets (%v), want %d", round, n, err, len(sent))
		}
		for i := range n {
			if !bytes.Equal(packets[i][:sizes[i]], sent[i]) || eps[i].DstToString() != ep.String() {
				t.Fatalf("round %d, packet %d: got %d bytes from %v, want %d bytes from %v, equal", round, i, sizes[i], eps[i], len(sent[i]), ep)
			}
		}
	}
}
