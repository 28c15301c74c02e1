package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/testcert"
	"github.com/wirelace/wirelace/relay/client"
	"github.com/wirelace/wirelace/relay/server"
)

type members struct {
	mu sync.Mutex
	m  map[wgtypes.Key]wgtypes.Key
}

func (f *members) Lookup(k wgtypes.Key) (wgtypes.Key, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ctl, ok := f.m[k]
	return ctl, ok
}

func (f *members) add(n node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[n.wg] = n.ctl.PublicKey()
}

type node struct{ wg, ctl wgtypes.Key }

func newNode(t *testing.T) node {
	t.Helper()
	wg, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return node{wg: wg.PublicKey(), ctl: ctl}
}

func logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// serve runs a relay on ln until the returned stop is called (or the test
// ends); stop waits for it to finish.
func serve(t *testing.T, ms *members, ln net.Listener) (stop func()) {
	t.Helper()
	srv, err := server.New(server.Config{Members: ms, Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, ln); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

type received struct {
	src wgtypes.Key
	pkt []byte
}

// peer is a running Client and what it received.
type peer struct {
	*client.Client
	node   node
	recv   chan received
	states chan client.State
}

func startClient(t *testing.T, addr string, n node, tlsCfg *tls.Config) *peer {
	t.Helper()
	p := &peer{node: n, recv: make(chan received, 1024), states: make(chan client.State, 64)}
	c, err := client.New(client.Config{
		Addr:       addr,
		TLS:        tlsCfg,
		PublicKey:  n.wg,
		ControlKey: n.ctl,
		Logger:     logger(),
		Receive: func(src wgtypes.Key, pkt []byte) {
			p.recv <- received{src, append([]byte(nil), pkt...)}
		},
		OnState: func(s client.State) {
			select {
			case p.states <- s:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Client = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

// waitState returns the next state change, failing the test after timeout.
func (p *peer) waitState(t *testing.T, timeout time.Duration) client.State {
	t.Helper()
	select {
	case s := <-p.states:
		return s
	case <-time.After(timeout):
		t.Fatalf("no state change within %v", timeout)
	}
	return client.State{}
}

func (p *peer) waitConnected(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := p.waitState(t, time.Until(deadline))
		if s.Connected {
			return
		}
		t.Logf("not yet connected: %v", s.Err)
	}
}

// exchange checks that a packet gets from a to b with a's key as source.
func exchange(t *testing.T, a, b *peer, msg string) {
	t.Helper()
	if err := a.Send(b.node.wg, []byte(msg)); err != nil {
		t.Fatalf("send: %v", err)
	}
	select {
	case r := <-b.recv:
		if r.src != a.node.wg || string(r.pkt) != msg {
			t.Fatalf("got %q from %v, want %q from %v", r.pkt, r.src, msg, a.node.wg)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%q did not arrive", msg)
	}
}

func TestClientsRelay(t *testing.T) {
	ms := &members{m: map[wgtypes.Key]wgtypes.Key{}}
	ln := listen(t, "127.0.0.1:0")
	serve(t, ms, ln)
	na, nb := newNode(t), newNode(t)
	ms.add(na)
	ms.add(nb)
	a := startClient(t, ln.Addr().String(), na, nil)
	b := startClient(t, ln.Addr().String(), nb, nil)
	a.waitConnected(t, 5*time.Second)
	b.waitConnected(t, 5*time.Second)

	exchange(t, a, b, "a to b")
	exchange(t, b, a, "b to a")

	// A burst larger than one flush, in order, with maximum-size packets.
	big := bytes.Repeat([]byte{7}, 65535)
	for i := range 100 {
		pkt := big[:1000+i*600]
		if err := a.Send(nb.wg, pkt); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for i := range 100 {
		select {
		case r := <-b.recv:
			if len(r.pkt) != 1000+i*600 {
				t.Fatalf("packet %d has %d bytes, want %d", i, len(r.pkt), 1000+i*600)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("packet %d did not arrive", i)
		}
	}
}

func TestSendErrors(t *testing.T) {
	n := newNode(t)
	c, err := client.New(client.Config{Addr: "127.0.0.1:1", PublicKey: n.wg, ControlKey: n.ctl, Receive: func(wgtypes.Key, []byte) {}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(n.wg, []byte("x")); !errors.Is(err, client.ErrNotConnected) {
		t.Errorf("not connected: got %v", err)
	}
	if err := c.Send(n.wg, make([]byte, 65536)); !errors.Is(err, client.ErrPacketSize) {
		t.Errorf("oversized: got %v", err)
	}
	if err := c.Send(n.wg, nil); !errors.Is(err, client.ErrPacketSize) {
		t.Errorf("empty: got %v", err)
	}
	if _, err := client.New(client.Config{Addr: "x:1", PublicKey: n.wg, ControlKey: n.ctl}); err == nil {
		t.Errorf("no Receive: want error")
	}
}

func TestClientReconnectsAfterServerRestart(t *testing.T) {
	ms := &members{m: map[wgtypes.Key]wgtypes.Key{}}
	ln := listen(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	stop := serve(t, ms, ln)
	na, nb := newNode(t), newNode(t)
	ms.add(na)
	ms.add(nb)
	a := startClient(t, addr, na, nil)
	b := startClient(t, addr, nb, nil)
	a.waitConnected(t, 5*time.Second)
	b.waitConnected(t, 5*time.Second)
	exchange(t, a, b, "before restart")

	stop()
	s := a.waitState(t, 5*time.Second)
	var closed *client.ClosedError
	if s.Connected || !errors.As(s.Err, &closed) || !strings.Contains(closed.Reason, "shutting down") {
		t.Fatalf("after server stop: %+v, want disconnected by the relay's shutdown", s)
	}
	if a.Connected() {
		t.Fatalf("still reports connected")
	}
	if err := a.Send(nb.wg, []byte("x")); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("send while disconnected: %v", err)
	}

	// A new relay on the same address, a moment later.
	time.Sleep(300 * time.Millisecond)
	serve(t, ms, listen(t, addr))
	start := time.Now()
	a.waitConnected(t, 10*time.Second)
	b.waitConnected(t, 10*time.Second)
	t.Logf("reconnected after %v", time.Since(start))
	exchange(t, a, b, "after restart")
	exchange(t, b, a, "and back")
}

func TestClientRefused(t *testing.T) {
	ms := &members{m: map[wgtypes.Key]wgtypes.Key{}}
	ln := listen(t, "127.0.0.1:0")
	serve(t, ms, ln)
	n := newNode(t) // no MeshNode yet
	p := startClient(t, ln.Addr().String(), n, nil)
	s := p.waitState(t, 5*time.Second)
	var refused *client.RefusedError
	if s.Connected || !errors.As(s.Err, &refused) || !strings.Contains(refused.Reason, "no MeshNode") {
		t.Fatalf("got %+v, want a refusal saying the key is in no MeshNode", s)
	}
	// Once the MeshNode exists, the retry gets in.
	ms.add(n)
	p.waitConnected(t, 10*time.Second)
}

func TestClientTLS(t *testing.T) {
	cert, pool := testcert.New(t)
	ms := &members{m: map[wgtypes.Key]wgtypes.Key{}}
	ln := tls.NewListener(listen(t, "127.0.0.1:0"), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	serve(t, ms, ln)
	na, nb := newNode(t), newNode(t)
	ms.add(na)
	ms.add(nb)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	a := startClient(t, ln.Addr().String(), na, cfg)
	b := startClient(t, ln.Addr().String(), nb, cfg)
	a.waitConnected(t, 5*time.Second)
	b.waitConnected(t, 5*time.Second)
	exchange(t, a, b, "over TLS")

	// A client that does not trust the relay's CA does not connect.
	nc := newNode(t)
	ms.add(nc)
	c := startClient(t, ln.Addr().String(), nc, &tls.Config{MinVersion: tls.VersionTLS13})
	s := c.waitState(t, 5*time.Second)
	if s.Connected || s.Err == nil || !strings.Contains(s.Err.Error(), "TLS") {
		t.Fatalf("untrusted relay: got %+v, want a TLS error", s)
	}
}

// BenchmarkRelayThroughput pushes 1400-byte datagrams (a WireGuard packet at
// a 1500-byte MTU) from one client through a relay to another, all on
// loopback in this process. The sender offers more than the path carries;
// backpressure (Send's and the relay's bounded waits) should slow it
// rather than drop, so %dropped should be 0 unless the machine starves a
// reader for longer than those waits. Gbit/s is what arrived, over the time
// until the last packet arrived.
func BenchmarkRelayThroughput(b *testing.B) {
	t := &testing.T{}
	ms := &members{m: map[wgtypes.Key]wgtypes.Key{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(server.Config{Members: ms, Rate: server.Unlimited, QueueDepth: 1024})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, ln)
	na, nb := newNode(t), newNode(t)
	ms.add(na)
	ms.add(nb)
	var got, last atomic.Int64
	mk := func(n node, recv func(wgtypes.Key, []byte)) *client.Client {
		c, err := client.New(client.Config{Addr: ln.Addr().String(), PublicKey: n.wg, ControlKey: n.ctl, Receive: recv, QueueDepth: 1024})
		if err != nil {
			b.Fatal(err)
		}
		go c.Run(ctx)
		return c
	}
	a := mk(na, func(wgtypes.Key, []byte) {})
	rb := mk(nb, func(_ wgtypes.Key, p []byte) {
		got.Add(int64(len(p)))
		last.Store(time.Now().UnixNano())
	})
	for !a.Connected() || !rb.Connected() {
		time.Sleep(time.Millisecond)
	}
	pkt := make([]byte, 1400)
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		for a.Send(nb.wg, pkt) == client.ErrQueueFull {
			runtime.Gosched()
		}
	}
	// Wait until nothing more arrives.
	for prev := int64(-1); got.Load() != prev; time.Sleep(100 * time.Millisecond) {
		prev = got.Load()
	}
	b.StopTimer()
	want := int64(b.N) * int64(len(pkt))
	if el := time.Unix(0, last.Load()).Sub(start); el > 0 {
		b.ReportMetric(float64(got.Load())*8/el.Seconds()/1e9, "Gbit/s")
	}
	b.ReportMetric(100*float64(want-got.Load())/float64(want), "%dropped")
}
