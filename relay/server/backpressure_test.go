package server

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/wirelace/wirelace/relay/internal/relaytest"
)

// A client that reads, only slower than its sender sends, slows the sender
// instead of losing packets: with a queue of a few packets and socket
// buffers kept small, every packet still arrives, in order, and the relay
// counts waits, not drops.
func TestSlowReaderGetsBackpressureNotDrops(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{
		Members: members, QueueDepth: 8, Rate: Unlimited,
		// Generous, so a loaded test machine cannot turn a wait into a drop.
		forwardWait: 10 * time.Second,
	})
	sender, slow := newNode(t, members), newNode(t, members)
	cs := relaytest.Connect(t, ts.addr, sender)
	cr := relaytest.Connect(t, ts.addr, slow)

	const total = 20000
	go func() {
		pkt := make([]byte, 1024)
		for i := range total {
			binary.BigEndian.PutUint32(pkt, uint32(i))
			if cs.Send(slow.WG, pkt) != nil {
				return
			}
		}
	}()
	// The reader holds off until the relay is making the sender wait (its
	// socket buffers and queue are full), then reads, pausing now and then
	// so that it stays the slower side.
	relaytest.WaitFor(t, "the relay to push back on the sender", 20*time.Second, func() bool {
		return ts.metric(t, "wirelace_relay_backpressure_waits_total") > 0
	})
	for i := range total {
		if i%100 == 0 {
			time.Sleep(time.Millisecond)
		}
		src, pkt := cr.RecvPacket(20 * time.Second)
		if src != sender.WG {
			t.Fatalf("packet %d from %s", i, shortKey(src))
		}
		if got := binary.BigEndian.Uint32(pkt); got != uint32(i) {
			t.Fatalf("packet %d arrived as %d: lost or reordered", i, got)
		}
	}
	if d := ts.metric(t, "wirelace_relay_dropped_packets_total", "reason", dropQueueFull); d != 0 {
		t.Fatalf("%v packets dropped for a client that reads", d)
	}
}

// A sender's packets for a client that stopped reading wait a bounded time
// and are then dropped, so its packets for everyone else still flow: the
// stalled client costs its sender a little time, not its other peers.
func TestStalledClientDoesNotBlockItsSendersOtherTraffic(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{
		Members: members, QueueDepth: 64, Rate: Unlimited,
		WriteTimeout: time.Minute, // the stalled client stays connected throughout
	})
	sender, stalled, d := newNode(t, members), newNode(t, members), newNode(t, members)
	cs := relaytest.Connect(t, ts.addr, sender)
	relaytest.Connect(t, ts.addr, stalled) // never reads
	cd := relaytest.Connect(t, ts.addr, d)

	// Interleaved: every packet for d follows some for the stalled client,
	// long after its queue and socket buffers are full.
	const total = 3000
	done := make(chan error, 1)
	go func() {
		big, small := make([]byte, 8000), make([]byte, 100)
		for i := range total {
			for range 8 {
				if err := cs.Send(stalled.WG, big); err != nil {
					done <- err
					return
				}
			}
			binary.BigEndian.PutUint32(small, uint32(i))
			if err := cs.Send(d.WG, small); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range total {
		src, pkt := cd.RecvPacket(20 * time.Second)
		if src != sender.WG || binary.BigEndian.Uint32(pkt) != uint32(i) {
			t.Fatalf("d's packet %d: from %s, number %d", i, shortKey(src), binary.BigEndian.Uint32(pkt))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ts.metric(t, "wirelace_relay_dropped_packets_total", "reason", dropQueueFull) == 0 {
		t.Fatal("nothing dropped for the stalled client: the test never filled its queue")
	}
}
