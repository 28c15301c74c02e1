package node

import (
	"slices"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/daemon/bind"
	"github.com/wirelace/wirelace/daemon/probe"
)

// handshakeDevice is a device whose peers have sent bytes but completed no
// handshake, and that records the handshakes it is asked to start or
// restart.
type handshakeDevice struct {
	mu        sync.Mutex
	peers     []wgtypes.Peer
	started   []wgtypes.Key
	restarted []wgtypes.Key
}

func (d *handshakeDevice) Peers() ([]wgtypes.Peer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.peers), nil
}

func (d *handshakeDevice) StartHandshake(k wgtypes.Key) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.started = append(d.started, k)
	return nil
}

func (d *handshakeDevice) RestartHandshake(k wgtypes.Key) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.restarted = append(d.restarted, k)
	return nil
}

// upRelay is a connected relay that takes every packet.
type upRelay struct{}

func (upRelay) SendPacket(wgtypes.Key, []byte) error { return nil }
func (upRelay) Connected() bool                      { return true }

// When the relay comes up, a peer whose first handshake was lost (sent,
// never completed) is asked through the relay to start one; a peer with a
// handshake, or that was never sent anything, is not.
func TestLostFirstHandshakeAskedThroughRelay(t *testing.T) {
	clk := newFakeClock()
	lost, done, quiet := newTestPeer(t, "lost", clk.now), newTestPeer(t, "done", clk.now), newTestPeer(t, "quiet", clk.now)
	h := newHarness(t, clk, lost, done, quiet)
	dev := &handshakeDevice{peers: []wgtypes.Peer{
		{PublicKey: lost.wg, TransmitBytes: 148},
		{PublicKey: done.wg, TransmitBytes: 148, LastHandshakeTime: t0},
		{PublicKey: quiet.wg},
	}}
	peers, _ := dev.Peers()
	now := clk.now().Add(youngPeer) // none is young: only the relay coming up asks
	out := h.p.lostHandshakes(peers, true, now)
	if len(out) != 1 || out[0].wg != lost.wg || out[0].msg.Kind != probe.Handshake || out[0].to.IsValid() {
		t.Fatalf("asked %+v, want one Handshake through the relay to %s", out, lost.name)
	}
	// Without the relay coming up, only a young peer is asked: a peer that
	// has long failed to answer is not pestered every lostCheckEvery.
	if out := h.p.lostHandshakes(peers, false, now); len(out) != 0 {
		t.Fatalf("asked %+v about old peers", out)
	}
	if out := h.p.lostHandshakes(peers, false, clk.now()); len(out) != 1 || out[0].wg != lost.wg {
		t.Fatalf("asked %+v, want the young peer %s", out, lost.name)
	}
	// Its direct path confirmed since (its initiation went to the relay,
	// or to a NAT not yet open to us): still asked, through the relay.
	h.p.mu.Lock()
	h.p.peers[lost.wg].route = bind.Route{Direct: lost.addr}
	h.p.mu.Unlock()
	if out := h.p.lostHandshakes(peers, false, clk.now()); len(out) != 1 || out[0].wg != lost.wg || out[0].to.IsValid() {
		t.Fatalf("asked %+v, want the young peer %s, now direct, through the relay", out, lost.name)
	}
}

// A peer is not asked while the handshake message this node last sent it
// may still be answered: asked, it would start a handshake that crosses
// ours. It is asked once that message is known lost (the relay could not
// reach the peer, or it had no way but a guess), or answerWait passed.
func TestNoAskWhileHandshakeInFlight(t *testing.T) {
	clk := newFakeClock()
	clk.ns.Store(time.Now().UnixNano()) // the Bind dates sends on the real clock
	relayed, guessed := newTestPeer(t, "relayed", clk.now), newTestPeer(t, "guessed", clk.now)
	h := newHarness(t, clk, relayed, guessed)
	peers := []wgtypes.Peer{{PublicKey: relayed.wg, TransmitBytes: 148}, {PublicKey: guessed.wg, TransmitBytes: 148}}
	asked := func(now time.Time) []wgtypes.Key {
		var keys []wgtypes.Key
		for _, o := range h.p.lostHandshakes(peers, false, now) {
			keys = append(keys, o.wg)
		}
		return keys
	}

	h.startSession(guessed, 1) // no relay yet: to the guess
	h.b.SetRelay(upRelay{})
	h.startSession(relayed, 2)
	clk.ns.Store(time.Now().UnixNano())
	if got := asked(clk.now()); !slices.Equal(got, []wgtypes.Key{guessed.wg}) {
		t.Fatalf("asked %v, want only %s (its initiation went to a guess)", got, guessed.name)
	}
	h.p.relayCannotReach(relayed.wg)
	if got := asked(clk.now()); len(got) != 2 {
		t.Fatalf("asked %v, want both once the relay could not reach %s", got, relayed.name)
	}
	h.startSession(relayed, 3) // a new one, through the relay
	clk.ns.Store(time.Now().UnixNano())
	if got := asked(clk.now()); slices.Contains(got, relayed.wg) {
		t.Fatalf("asked %s while its new handshake may be answered", relayed.name)
	}
	if got := asked(clk.now().Add(answerWait)); !slices.Contains(got, relayed.wg) {
		t.Fatalf("did not ask %s after answerWait", relayed.name)
	}
}

// A Handshake request through the relay, from the member the relay says
// sent it, starts WireGuard's handshake with that member, or restarts it
// if this node is the side of the pair that restarts; one that came
// directly does neither (only the relay's word says the relay path works).
func TestHandshakeRequestStartsHandshake(t *testing.T) {
	clk := newFakeClock()
	peer := newTestPeer(t, "peer", clk.now)
	h := newHarness(t, clk, peer)
	dev := &handshakeDevice{}
	h.p.setDevice(dev)
	seal := func() []byte {
		pkt, err := peer.ring.Seal(probe.Message{Kind: probe.Handshake}, h.ctl)
		if err != nil {
			t.Fatal(err)
		}
		clk.add(time.Millisecond) // each sealed at its own time
		return pkt
	}
	h.p.handleProbe(seal(), peer.addr, false, wgtypes.Key{})
	if len(dev.started)+len(dev.restarted) != 0 {
		t.Fatal("a direct Handshake request started a handshake")
	}
	h.p.handleProbe(seal(), peer.addr, true, peer.wg)
	want, other := &dev.started, &dev.restarted
	if restartsOnRequest(h.ctl, peer.ring.PublicKey(), bind.HandshakeSent{}, clk.now()) {
		want, other = other, want
	}
	if len(*want) != 1 || (*want)[0] != peer.wg || len(*other) != 0 {
		t.Fatalf("started %v, restarted %v; want one handshake with the peer, restarted only by the side that restarts", dev.started, dev.restarted)
	}
}

// Of two nodes whose handshake messages were lost, exactly one restarts
// when the other asks: both restarting would cross their initiations,
// neither would leave both waiting out WireGuard's 5 s. Neither restarts
// while its own message may still be answered.
func TestOneSideRestarts(t *testing.T) {
	now := t0
	lost := []bind.HandshakeSent{{}, {At: now, Lost: true}, {At: now.Add(-answerWait)}}
	for range 100 {
		a, b := newKey(t).PublicKey(), newKey(t).PublicKey()
		for _, hs := range lost {
			if restartsOnRequest(a, b, hs, now) == restartsOnRequest(b, a, hs, now) {
				t.Fatalf("%s and %s, own handshake %+v: both or neither restart", a, b, hs)
			}
		}
		inFlight := bind.HandshakeSent{At: now.Add(-answerWait + time.Millisecond), Relayed: true}
		if restartsOnRequest(a, b, inFlight, now) || restartsOnRequest(b, a, inFlight, now) {
			t.Fatalf("%s and %s: a restart while the own handshake may be answered", a, b)
		}
	}
	k := newKey(t).PublicKey()
	if restartsOnRequest(k, k, bind.HandshakeSent{}, now) {
		t.Fatal("a node restarts for a request from its own key")
	}
}

// A handshake message may be answered for answerWait after it was sent,
// unless it is known lost.
func TestHandshakeInFlight(t *testing.T) {
	for _, c := range []struct {
		hs   bind.HandshakeSent
		want bool
	}{
		{bind.HandshakeSent{}, false},      // none sent
		{bind.HandshakeSent{At: t0}, true}, // just sent
		{bind.HandshakeSent{At: t0.Add(-answerWait / 2), Relayed: true}, true},
		{bind.HandshakeSent{At: t0, Lost: true}, false},                     // known lost
		{bind.HandshakeSent{At: t0.Add(-answerWait), Relayed: true}, false}, // unanswered too long
	} {
		if got := handshakeInFlight(c.hs, t0); got != c.want {
			t.Errorf("handshakeInFlight(%+v) = %v, want %v", c.hs, got, c.want)
		}
	}
}

// The check for lost first handshakes runs when a relay connection comes
// up, and then every interval while a young peer is reached through the
// relay; not while nobody is young.
func TestLostCheckDue(t *testing.T) {
	last := time.Now()
	for _, c := range []struct {
		cameUp, young bool
		after         time.Duration
		want          bool
	}{
		{true, false, 0, true},                     // a relay connection came up
		{false, true, lostCheckEvery / 2, false},   // too soon
		{false, true, lostCheckEvery, true},        // due
		{false, false, 10 * lostCheckEvery, false}, // nobody young
	} {
		if got := lostCheckDue(c.cameUp, c.young, last, last.Add(c.after), lostCheckEvery); got != c.want {
			t.Errorf("lostCheckDue(cameUp=%v, young=%v, after %v) = %v, want %v", c.cameUp, c.young, c.after, got, c.want)
		}
	}
}

// WireGuard traffic through the relay from a peer reached directly only
// kicks the path loop once per burst (the peer doubts the path), not once
// per packet: the step re-arms the kick when the relay has fallen quiet.
func TestRelayedFromDirectPeerKicksOncePerBurst(t *testing.T) {
	clk := newFakeClock()
	peer := newTestPeer(t, "peer", clk.now)
	h := newHarness(t, clk, peer)
	pp := h.p.peers[peer.wg]
	pp.directOnly.Store(true)
	drain := func() int {
		n := 0
		for {
			select {
			case <-h.p.kick:
				n++
			default:
				return n
			}
		}
	}
	drain()
	h.p.handleRelayed(peer.wg, transport(1, 64))
	if n := drain(); n != 1 {
		t.Fatalf("first relayed packet: %d kicks, want 1", n)
	}
	for range 10 {
		h.p.handleRelayed(peer.wg, transport(1, 64))
	}
	if n := drain(); n != 0 {
		t.Fatalf("the rest of the burst kicked %d times, want 0", n)
	}
	if pp.directOnly.Load() {
		t.Fatal("still armed during the burst")
	}
}
