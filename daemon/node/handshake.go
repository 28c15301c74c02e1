package node

import (
	"bytes"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/daemon/bind"
	"github.com/wirelace/wirelace/daemon/probe"
)

// Recovery of lost first handshakes. WireGuard sends a first packet's
// handshake initiation at once, along whatever route the peer has then, and
// retries a lost one only after its 5 s rekey timeout, which it will not
// shorten. A new pair loses it when its relay sessions are not both up
// yet: sent before this node's relay was connected, it went to a guessed
// address (behind a NAT, nowhere); sent before the peer's, the relay
// dropped it. Sent directly, it is lost when the peer's NAT has not yet
// opened to this node. And the route changes under it: the direct path of
// a new peer is confirmed within tens of milliseconds, often after the
// initiation went to the relay, so a young peer is watched whatever its
// route is now (a peer that had turned direct waited out the 5 s in the
// join bench). So the side whose initiation was lost asks the other,
// through the relay, to start one (lostHandshakes, probe.Handshake), and
// keeps asking until a handshake completes: the peer may not be connected
// to the relay yet. The asked side starts one, or restarts its own if its
// side was lost too (restartsOnRequest).
//
// What must not happen is two initiations crossing: each side answers the
// other's and drops its own, neither response is then accepted, and the
// pair waits out the 5 s after all. Hence one side of a pair restarts, and
// nobody asks, or restarts, while a handshake message of its own may still
// be answered (handshakeInFlight).

// Timing of the recovery.
const (
	// A new peer is watched for a lost first handshake every
	// lostCheckEvery during its first youngPeer. An ask
	// that finds the peer not yet connected to the relay is lost too, so
	// this bounds how soon after the peer connects a handshake starts.
	// Past youngPeer WireGuard's own retries have happened anyway.
	lostCheckEvery = 200 * time.Millisecond
	youngPeer      = 10 * time.Second
	// answerWait is how long a handshake message sent to a peer may still
	// be answered: more than a round trip through a relay on another
	// continent (300 ms) with the handshakes' computation on busy nodes.
	// Sooner than that only one known to be lost (bind.HandshakeSent.Lost)
	// is given up on.
	answerWait = 500 * time.Millisecond
)

// handshakes is what the path manager asks of the device besides its
// counters; *device.Device implements it.
type handshakes interface {
	StartHandshake(key wgtypes.Key) error
	RestartHandshake(key wgtypes.Key) error
}

// lostCheckDue says whether to look for lost first handshakes now: when a
// relay connection came up, and every every while a peer is young and a
// relay is up to carry the ask.
func lostCheckDue(relayCameUp, young bool, last, now time.Time, every time.Duration) bool {
	return relayCameUp || young && now.Sub(last) >= every
}

// handshakeInFlight says whether hs, the last handshake message this node
// sent a peer, may still be answered at now.
func handshakeInFlight(hs bind.HandshakeSent, now time.Time) bool {
	return !hs.At.IsZero() && !hs.Lost && now.Sub(hs.At) < answerWait
}

// lostHandshakes picks, from the device's peers, those to ask through the
// relay to start a handshake (probe.Handshake): peers WireGuard sent
// something but never completed a handshake with, whatever their route,
// that are young (or any such peer, when the relay has just come up),
// unless a handshake message this node sent them may still be answered.
// It runs when the relay has just come up, and every lostCheckEvery
// while a peer is young.
func (p *paths) lostHandshakes(peers []wgtypes.Peer, relayCameUp bool, now time.Time) []outgoing {
	var out []outgoing
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pe := range peers {
		if pe.TransmitBytes == 0 || !pe.LastHandshakeTime.IsZero() {
			continue
		}
		pp := p.peers[pe.PublicKey]
		if pp == nil || !relayCameUp && now.Sub(pp.joined) >= youngPeer {
			continue
		}
		hs := p.bind.Activity(pp.wg).Handshake
		if handshakeInFlight(hs, now) {
			continue
		}
		p.log.Debug("asking peer for a handshake", "peer", pp.name, "ours_sent", hs.At, "ours_lost", hs.Lost)
		out = append(out, outgoing{peer: pp.name, ctl: pp.ctl, wg: pp.wg, msg: probe.Message{Kind: probe.Handshake}})
	}
	return out
}

// restartsOnRequest says whether this node, with control key self, answers
// a peer's request for a handshake (see lostHandshakes) by restarting its
// own (device.RestartHandshake) rather than starting one
// (device.StartHandshake, which WireGuard declines within 5 s of this
// node's last handshake message). own is the last handshake message this
// node sent the peer.
//
// If this node's own initiation was lost too, the peer's ask crossed ours,
// and only a restart helps; but both sides restarting would cross their
// initiations. So only the side whose control key sorts first restarts;
// the other only starts, which is all it needs when its side lost nothing.
// And it does not restart while its own handshake message may still be
// answered: the peer asked before that message reached it.
func restartsOnRequest(self, peer wgtypes.Key, own bind.HandshakeSent, now time.Time) bool {
	return bytes.Compare(self[:], peer[:]) < 0 && !handshakeInFlight(own, now)
}
