package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/relay/protocol"
)

// fakeMembers is a Members the tests edit directly.
type fakeMembers struct {
	mu sync.Mutex
	m  map[wgtypes.Key]wgtypes.Key
}

func newFakeMembers() *fakeMembers {
	return &fakeMembers{m: make(map[wgtypes.Key]wgtypes.Key)}
}

func (f *fakeMembers) Lookup(k wgtypes.Key) (wgtypes.Key, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ctl, ok := f.m[k]
	return ctl, ok
}

func (f *fakeMembers) set(wg, ctl wgtypes.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[wg] = ctl
}

func (f *fakeMembers) remove(wg wgtypes.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, wg)
}

// node is a mesh node's keys: the WireGuard public key it is known by and
// its control private key.
type node struct {
	wg  wgtypes.Key
	ctl wgtypes.Key
}

func newKey(t testing.TB) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newNode makes a node and, when members is not nil, its MeshNode.
func newNode(t testing.TB, members *fakeMembers) node {
	n := node{wg: newKey(t).PublicKey(), ctl: newKey(t)}
	if members != nil {
		members.set(n.wg, n.ctl.PublicKey())
	}
	return n
}

type testServer struct {
	srv  *Server
	addr string
	reg  *prometheus.Registry
	stop func()
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startServer runs a Server on a loopback port until the test ends.
func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	ts := &testServer{srv: srv, addr: ln.Addr().String(), reg: reg}
	ts.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Serve did not return after cancel")
			}
		})
	}
	t.Cleanup(ts.stop)
	return ts
}

// metric returns the value of a counter or gauge, by name and labels.
func (ts *testServer) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// waitFor polls cond (a test-side check, not the relay) until it holds.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawClient speaks the protocol frame by frame, so tests can misbehave.
type rawClient struct {
	t     testing.TB
	conn  net.Conn
	r     *protocol.Reader
	w     *protocol.Writer
	hello protocol.ServerHello
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	return dialRawFrom(t, addr, "")
}

// dialRawFrom is dialRaw from the loopback address src, so that a test can
// play several hosts.
func dialRawFrom(t testing.TB, addr, src string) *rawClient {
	t.Helper()
	conn, err := dialFrom(addr, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{
		t:    t,
		conn: conn,
		r:    protocol.NewReader(bufio.NewReader(conn)),
		w:    protocol.NewWriter(bufio.NewWriter(conn)),
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, p, err := c.r.ReadFrame()
	if err != nil || typ != protocol.TypeServerHello {
		t.Fatalf("ServerHello: %v %v", typ, err)
	}
	if c.hello, err = protocol.ParseServerHello(p); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Time{})
	return c
}

// sendAuth sends a ClientAuth and returns the server's answer: nil for
// ServerAuthOK, an error holding the reason otherwise.
func (c *rawClient) sendAuth(a protocol.ClientAuth) error {
	c.t.Helper()
	if err := c.w.WriteFrame(protocol.TypeClientAuth, a.Append(nil)); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	typ, p, err := c.r.ReadFrame()
	if err != nil {
		return err
	}
	switch typ {
	case protocol.TypeServerAuthOK:
		return nil
	case protocol.TypeServerAuthError:
		return fmt.Errorf("refused: %s", protocol.ParseReason(p))
	}
	return fmt.Errorf("unexpected %v", typ)
}

func (c *rawClient) auth(n node) error {
	a, err := protocol.NewClientAuth(c.hello, n.wg, n.ctl, rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.sendAuth(a)
}

// dialFrom opens a TCP connection to addr from the loopback address src
// ("" for the system's choice).
func dialFrom(addr, src string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d.Dial("tcp", addr)
}

// connect dials and authenticates as n.
func connect(t testing.TB, addr string, n node) *rawClient {
	t.Helper()
	return connectFrom(t, addr, "", n)
}

// connectFrom dials from the loopback address src and authenticates as n.
func connectFrom(t testing.TB, addr, src string, n node) *rawClient {
	t.Helper()
	c := dialRawFrom(t, addr, src)
	if err := c.auth(n); err != nil {
		t.Fatalf("auth: %v", err)
	}
	return c
}

func (c *rawClient) send(dst wgtypes.Key, pkt []byte) error {
	if err := c.w.WritePacket(protocol.TypeSendPacket, dst, pkt); err != nil {
		return err
	}
	return c.w.Flush()
}

// sendFlood sends size-byte packets from c to dst as fast as the relay takes
// them, until the returned stop is called (or the test ends); sent counts
// them.
func sendFlood(t testing.TB, c *rawClient, dst wgtypes.Key, size int) (sent *atomic.Int64, stop func()) {
	sent = new(atomic.Int64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		pkt := make([]byte, size)
		for {
			select {
			case <-done:
				return
			default:
			}
			if c.send(dst, pkt) != nil {
				return
			}
			sent.Add(1)
		}
	})
	stop = sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
	t.Cleanup(stop)
	return sent, stop
}

func (c *rawClient) keepAlive() error {
	if err := c.w.WriteFrame(protocol.TypeKeepAlive, nil); err != nil {
		return err
	}
	return c.w.Flush()
}

// recv returns the next frame other than a KeepAlive.
func (c *rawClient) recv(timeout time.Duration) (protocol.Type, []byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		typ, p, err := c.r.ReadFrame()
		if err != nil || typ != protocol.TypeKeepAlive {
			return typ, p, err
		}
	}
}

// recvPacket returns the next relayed packet.
func (c *rawClient) recvPacket(timeout time.Duration) (wgtypes.Key, []byte) {
	c.t.Helper()
	typ, p, err := c.recv(timeout)
	if err != nil {
		c.t.Fatalf("receive: %v", err)
	}
	if typ != protocol.TypeRecvPacket {
		c.t.Fatalf("got %v, want RecvPacket", typ)
	}
	src, pkt, err := protocol.ParsePacket(p)
	if err != nil {
		c.t.Fatal(err)
	}
	return src, append([]byte(nil), pkt...)
}

// expectClosed reads until the relay closes the connection and returns the
// ServerClose reason, if it sent one.
func (c *rawClient) expectClosed(timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	c.conn.SetReadDeadline(deadline)
	reason := ""
	for {
		typ, p, err := c.r.ReadFrame()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.t.Fatalf("connection still open after %v", timeout)
			}
			return reason
		}
		if typ == protocol.TypeServerClose {
			reason = protocol.ParseReason(p)
		}
	}
}
