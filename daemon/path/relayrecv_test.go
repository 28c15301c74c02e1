package path

import (
	"testing"
	"time"
)

// A proof dated before a send (traffic's proof covers an interval that
// ends after it started) leaves that send awaiting an answer.
func TestProofOlderThanSendKeepsItArmed(t *testing.T) {
	p := NewPeer("b", t0)
	p.OnDirectRecv(stunA, t0)
	p.OnDirectSend(t0.Add(50*time.Millisecond + ReplyWindow + 30*time.Millisecond))
	p.OnDirectRecv(stunA, t0.Add(50*time.Millisecond)) // proof dated before the send, which is no reply to it
	if a := p.Tick(t0.Add(50*time.Millisecond + ReplyWindow + 40*time.Millisecond)); !a.Next.Equal(t0.Add(50*time.Millisecond + SuspectAfter)) {
		t.Fatalf("Next %v, want SuspectAfter after the proof: the send still awaits one", a.Next.Sub(t0))
	}
}

// Traffic through the relay from a peer on a confirmed direct path means
// the peer doubts it: unless the path was confirmed within SuspectAfter,
// it is doubted at once (both paths, a ping), and a pong restores it.
func TestRelayRecvDoubtsStalePath(t *testing.T) {
	p := NewPeer("b", t0)
	p.OnDirectRecv(stunA, t0)

	// Fresh: left alone (the peer may be waking from standby).
	p.OnRelayRecv(t0.Add(SuspectAfter / 2))
	if d, r := p.Send(t0.Add(SuspectAfter / 2)); d != stunA || r {
		t.Fatalf("fresh path doubted: Send %v %v", d, r)
	}

	at := t0.Add(SuspectAfter)
	p.OnRelayRecv(at)
	if d, r := p.Send(at); d != stunA || !r {
		t.Fatalf("relayed traffic on a path unconfirmed for SuspectAfter: Send %v %v, want both", d, r)
	}
	a := p.Tick(at)
	var tx [12]byte
	for _, pg := range a.Pings {
		if pg.To == stunA {
			tx = pg.TxID
		}
	}
	if tx == ([12]byte{}) {
		t.Fatalf("doubted address not pinged: %+v", a)
	}
	p.OnPong(stunA, tx, at.Add(time.Millisecond))
	if d, r := p.Send(at.Add(time.Millisecond)); d != stunA || r {
		t.Fatalf("after the pong: Send %v %v, want direct only", d, r)
	}
}
