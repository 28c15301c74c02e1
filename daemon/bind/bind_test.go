package bind

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// TestLoopback sends a STUN-like and a WireGuard-like packet between two real
// Binds on 127.0.0.1 and checks that each reaches only its own consumer.
func TestLoopback(t *testing.T) {
	a, b := New(nil), New(nil)

	handled := make(chan seen, 4)
	b.SetHandler(func(pkt []byte, from netip.AddrPort) {
		handled <- seen{bytes.Clone(pkt), from}
	})

	if _, _, err := a.Open(0); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if port == 0 || b.Port() != port {
		t.Fatalf("Open returned port %d, Port() = %d", port, b.Port())
	}

	received := make(chan []byte, 4)
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func(fn conn.ReceiveFunc) {
			defer wg.Done()
			packets := make([][]byte, b.BatchSize())
			for i := range packets {
				packets[i] = make([]byte, 2048)
			}
			sizes := make([]int, len(packets))
			eps := make([]conn.Endpoint, len(packets))
			for {
				n, err := fn(packets, sizes, eps)
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("receive: %v", err)
					}
					return
				}
				for i := range n {
					if sizes[i] > 0 {
						received <- bytes.Clone(packets[i][:sizes[i]])
					}
				}
			}
		}(fn)
	}

	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	stunPkt := stun(0x0001, 0)
	copy(stunPkt[8:], "txid-123456!")
	wgPkt := msg(4, 48)
	copy(wgPkt[16:], "ciphertext")
	if err := a.SendTo(stunPkt, to); err != nil {
		t.Fatal(err)
	}
	if err := a.SendTo(wgPkt, to); err != nil {
		t.Fatal(err)
	}

	timeout := time.After(5 * time.Second)
	select {
	case h := <-handled:
		if !bytes.Equal(h.data, stunPkt) {
			t.Errorf("handler got %x, want the STUN packet", h.data)
		}
		if h.from.Port() != a.Port() || !h.from.Addr().IsLoopback() {
			t.Errorf("handler from = %v, want 127.0.0.1:%d", h.from, a.Port())
		}
	case <-timeout:
		t.Fatal("handler got nothing")
	}
	select {
	case p := <-received:
		if !bytes.Equal(p, wgPkt) {
			t.Errorf("ReceiveFunc got %x, want the WireGuard packet", p)
		}
	case <-timeout:
		t.Fatal("ReceiveFunc got nothing")
	}

	// Nothing else may arrive on either side.
	select {
	case h := <-handled:
		t.Errorf("handler got an extra packet %x", h.data)
	case p := <-received:
		t.Errorf("ReceiveFunc got an extra packet %x", p)
	case <-time.After(200 * time.Millisecond):
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // the receive functions return net.ErrClosed
	if b.Port() != 0 {
		t.Errorf("Port() = %d after Close, want 0", b.Port())
	}
	if err := b.SendTo(stunPkt, to); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SendTo after Close = %v, want net.ErrClosed", err)
	}
}
