package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/relay/internal/sendq"
	"github.com/wirelace/wirelace/relay/protocol"
)

// startSession runs a session's write loop on one end of a synchronous pipe
// (a write returns only once the other end read it: a relay exactly as
// slow as its reader) and returns the Client and the relay's end.
func startSession(t *testing.T, opts sendq.Options) (*Client, net.Conn) {
	t.Helper()
	c, err := New(Config{
		Addr: "relay.test:443", PublicKey: wgtypes.Key{1}, ControlKey: wgtypes.Key{2},
		Receive: func(wgtypes.Key, []byte) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	local, remote := net.Pipe()
	s := &session{out: sendq.New(opts)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.writeLoop(ctx, s, local, protocol.NewBatchWriter(local, writeBufSize), time.Hour)
	}()
	c.session.Store(s)
	t.Cleanup(func() {
		cancel()
		local.Close()
		remote.Close()
		<-done
		c.session.Store(nil)
		s.out.Close()
	})
	return c, remote
}

// A relay connection slower than the node's sends slows Send down instead
// of dropping: every packet arrives, in order, and Send never fails.
func TestSendWaitsForSlowRelay(t *testing.T) {
	c, relay := startSession(t, sendq.Options{MaxLen: 4, MaxBytes: 1 << 20, Wait: 10 * time.Second, Holdoff: time.Second})
	const total = 2000
	sent := make(chan error, 1)
	go func() {
		pkt := make([]byte, 200)
		for i := range total {
			binary.BigEndian.PutUint32(pkt, uint32(i))
			if err := c.Send(wgtypes.Key{9}, pkt); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	r := protocol.NewReader(bufio.NewReaderSize(relay, 256))
	for i := range total {
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // slower than the sender
		}
		typ, p, err := r.ReadFrame()
		if err != nil || typ != protocol.TypeSendPacket {
			t.Fatalf("frame %d: %v %v", i, typ, err)
		}
		dst, pkt, err := protocol.ParsePacket(p)
		if err != nil || dst != (wgtypes.Key{9}) || binary.BigEndian.Uint32(pkt) != uint32(i) {
			t.Fatalf("frame %d: to %v, number %d, %v: lost or reordered", i, dst, binary.BigEndian.Uint32(pkt), err)
		}
	}
	if err := <-sent; err != nil {
		t.Fatalf("Send failed although the relay kept reading: %v", err)
	}
}

// A relay that stopped reading costs Send one bounded wait, then, for the
// holdoff, none: packets are dropped (ErrQueueFull) without waiting.
func TestSendToStalledRelayDropsAfterBoundedWait(t *testing.T) {
	const wait = time.Second
	c, _ := startSession(t, sendq.Options{MaxLen: 4, MaxBytes: 1 << 20, Wait: wait, Holdoff: time.Hour})
	pkt := make([]byte, 200)
	// The writer takes a first packet and blocks writing it.
	if err := c.Send(wgtypes.Key{9}, pkt); err != nil {
		t.Fatal(err)
	}
	for c.session.Load().out.Len() > 0 {
		time.Sleep(time.Millisecond)
	}
	var err error
	start := time.Now()
	for range 100 {
		if err = c.Send(wgtypes.Key{9}, pkt); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Send to a relay that reads nothing: %v, want ErrQueueFull", err)
	}
	if waited := time.Since(start); waited < wait {
		t.Fatalf("first drop after %v, want a wait of %v first", waited, wait)
	}
	start = time.Now()
	if err := c.Send(wgtypes.Key{9}, pkt); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Send to a stalled relay: %v, want ErrQueueFull", err)
	}
	if waited := time.Since(start); waited >= wait/2 {
		t.Fatalf("Send to a stalled relay waited %v, want no wait", waited)
	}
}
