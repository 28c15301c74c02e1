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
// handshake, and that records the handshakes it is asked to start.
type handshakeDevice struct {
	mu      sync.Mutex
	peers   []wgtypes.Peer
	started []wgtypes.Key
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
	h.p.mu.Lock()
	for _, pp := range h.p.peers {
		pp.route = bind.Route{Relay: true} // as the relay sweep leaves them
	}
	h.p.mu.Unlock()
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
}

// A Handshake request through the relay, from the member the relay says
// sent it, starts WireGuard's handshake with that member; one that came
// directly does not (only the relay's word says the relay path works).
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
	if len(dev.started) != 0 {
		t.Fatal("a direct Handshake request started a handshake")
	}
	h.p.handleProbe(seal(), peer.addr, true, peer.wg)
	if len(dev.started) != 1 || dev.started[0] != peer.wg {
		t.Fatalf("started %v, want one handshake with the peer", dev.started)
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
