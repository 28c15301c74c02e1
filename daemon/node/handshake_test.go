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
	out := h.p.lostHandshakes(dev)
	if len(out) != 1 || out[0].wg != lost.wg || out[0].msg.Kind != probe.Handshake || out[0].to.IsValid() {
		t.Fatalf("asked %+v, want one Handshake through the relay to %s", out, lost.name)
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

// A peer reached through the relay is watched for a lost first handshake
// while it is young, every lostCheckEvery, even when no relay connection
// comes up: its first initiation may have reached the relay before the
// peer did. Old peers, and peers on a direct path, are not.
func TestYoungRelayedPeersAreWatched(t *testing.T) {
	clk := newFakeClock()
	a, b := newTestPeer(t, "a", clk.now), newTestPeer(t, "b", clk.now)
	h := newHarness(t, clk, a, b)
	now := clk.now()
	h.p.mu.Lock()
	for _, pp := range h.p.peers {
		pp.route = bind.Route{Direct: a.addr} // both direct
	}
	young := h.p.youngRelayed(now)
	h.p.peers[a.wg].route = bind.Route{Relay: true}
	youngRelayed := h.p.youngRelayed(now)
	old := h.p.youngRelayed(now.Add(youngPeer))
	h.p.mu.Unlock()
	if young {
		t.Error("peers on a direct path count as young relayed peers")
	}
	if !youngRelayed {
		t.Error("a new peer reached through the relay is not watched")
	}
	if old {
		t.Errorf("a peer %s old is still watched", youngPeer)
	}

	last := now
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
		if got := lostCheckDue(c.cameUp, c.young, last, last.Add(c.after)); got != c.want {
			t.Errorf("lostCheckDue(cameUp=%v, young=%v, after %v) = %v, want %v", c.cameUp, c.young, c.after, got, c.want)
		}
	}
}
