package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wirelace/wirelace/relay/internal/relaytest"
	"github.com/wirelace/wirelace/relay/protocol"
)

// flood opens n connections to addr from the loopback address src and
// leaves them open, sending nothing, until the test ends.
func flood(t *testing.T, addr, src string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := relaytest.DialTCP(addr, src)
		if err != nil {
			t.Fatalf("flood connection %d from %s: %v", len(conns), src, err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() { closeAll(conns) })
	return conns
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// memInUse is the heap and goroutine stack memory in use after a GC.
func memInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}

func (ts *testServer) refused(t testing.TB, reason string) float64 {
	t.Helper()
	return ts.metric(t, "wirelace_relay_refused_connections_total", "reason", reason)
}

// One host opens 500 connections and never authenticates. The relay holds
// only MaxHandshakesPerIP of them, closes the rest as they arrive, keeps
// its goroutines and memory bounded, and members elsewhere connect and
// relay throughout.
func TestHandshakeFloodFromOneHost(t *testing.T) {
	const (
		n        = 500
		perIP    = 16
		slackG   = 20      // goroutines that come and go in the runtime and the test
		memBound = 4 << 20 // the old relay held 64 KiB of buffers per connection: 31 MiB here
	)
	members := newFakeMembers()
	ts := startServer(t, Config{
		Members: members, MaxHandshakes: 64, MaxHandshakesPerIP: perIP,
		AuthTimeout: time.Minute, // the flood is held for the whole test
	})
	goroutines, mem := runtime.NumGoroutine(), memInUse()

	flood(t, ts.addr, "127.0.0.1", n)
	relaytest.WaitFor(t, "the flood to be refused", 10*time.Second, func() bool {
		return ts.refused(t, refusedSourceHandshakes) == n-perIP
	})
	if st := ts.srv.Stats(); st.Handshakes != perIP || st.Sessions != 0 {
		t.Fatalf("relay holds %+v, want %d handshakes and no sessions", st, perIP)
	}
	if got := ts.metric(t, "wirelace_relay_handshakes_in_progress"); got != perIP {
		t.Fatalf("handshakes gauge %v, want %d", got, perIP)
	}
	dg, dm := runtime.NumGoroutine()-goroutines, memInUse()-mem
	t.Logf("holding %d of %d unauthenticated connections: %+d goroutines, %+d KiB", perIP, n, dg, dm>>10)
	if dg > perIP+slackG {
		t.Errorf("%d more goroutines with the flood held, want at most %d", dg, perIP+slackG)
	}
	if dm > memBound {
		t.Errorf("%d KiB more memory with the flood held, want at most %d KiB", dm>>10, memBound>>10)
	}

	// Members on other hosts are not held up by it.
	a, b := newNode(t, members), newNode(t, members)
	ca, cb := relaytest.ConnectFrom(t, ts.addr, "127.0.0.2", a), relaytest.ConnectFrom(t, ts.addr, "127.0.0.3", b)
	must(t, ca.Send(b.WG, []byte("through the flood")))
	if src, pkt := cb.RecvPacket(5 * time.Second); src != a.WG || string(pkt) != "through the flood" {
		t.Fatalf("b got %q from %s", pkt, shortKey(src))
	}
	if st := ts.srv.Stats(); st.Sessions != 2 || st.Handshakes != perIP {
		t.Fatalf("relay holds %+v, want 2 sessions beside the %d held handshakes", st, perIP)
	}
}

// Many hosts together fill the overall handshake limit; the relay holds no
// more than it, and takes members again as soon as the flood lets go.
func TestHandshakeFloodFromManyHosts(t *testing.T) {
	const (
		hosts, perHost = 10, 50
		maxHandshakes  = 64
	)
	members := newFakeMembers()
	ts := startServer(t, Config{
		Members: members, MaxHandshakes: maxHandshakes, MaxHandshakesPerIP: 16,
		AuthTimeout: time.Minute,
	})
	goroutines := runtime.NumGoroutine()
	var conns []net.Conn
	for h := range hosts {
		conns = append(conns, flood(t, ts.addr, fmt.Sprintf("127.0.1.%d", h+1), perHost)...)
	}
	relaytest.WaitFor(t, "the flood to be refused", 10*time.Second, func() bool {
		return ts.refused(t, refusedHandshakes)+ts.refused(t, refusedSourceHandshakes) == hosts*perHost-maxHandshakes
	})
	if ts.refused(t, refusedHandshakes) == 0 {
		t.Fatalf("overall limit never refused anything")
	}
	if st := ts.srv.Stats(); st.Handshakes != maxHandshakes {
		t.Fatalf("relay holds %d handshakes, want %d", st.Handshakes, maxHandshakes)
	}
	if dg := runtime.NumGoroutine() - goroutines; dg > maxHandshakes+20 {
		t.Errorf("%d more goroutines with the flood held, want at most %d", dg, maxHandshakes+20)
	}

	closeAll(conns)
	relaytest.WaitFor(t, "the held handshakes to end", 10*time.Second, func() bool { return ts.srv.Stats().Handshakes == 0 })
	a, b := newNode(t, members), newNode(t, members)
	ca, cb := relaytest.Connect(t, ts.addr, a), relaytest.Connect(t, ts.addr, b)
	must(t, ca.Send(b.WG, []byte("after the flood")))
	cb.RecvPacket(5 * time.Second)
}

// A session finished with its handshake no longer counts against the
// handshake limits, however long it lasts.
func TestSessionsFreeTheirHandshakeSlot(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members, MaxHandshakes: 2, MaxHandshakesPerIP: 1})
	for range 5 {
		relaytest.Connect(t, ts.addr, newNode(t, members))
	}
	if st := ts.srv.Stats(); st.Sessions != 5 || st.Handshakes != 0 {
		t.Fatalf("relay holds %+v, want 5 sessions and no handshakes", st)
	}
}

func TestSessionLimit(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members, MaxSessions: 2})
	a, b, c := newNode(t, members), newNode(t, members), newNode(t, members)
	relaytest.Connect(t, ts.addr, a)
	cb := relaytest.Connect(t, ts.addr, b)

	if err := relaytest.Dial(t, ts.addr).Auth(c); err == nil || !strings.Contains(err.Error(), "relay is full") {
		t.Fatalf("third session: got %v, want a refusal saying the relay is full", err)
	}
	if got := ts.refused(t, refusedSessions); got != 1 {
		t.Fatalf("session refusals %v, want 1", got)
	}
	// A connected key may always replace its session.
	newer := relaytest.Connect(t, ts.addr, a)
	// When a session ends, there is room again.
	cb.Conn.Close()
	relaytest.WaitFor(t, "b's session to end", 5*time.Second, func() bool { return ts.srv.Stats().Sessions == 1 })
	cc := relaytest.Connect(t, ts.addr, c)
	must(t, cc.Send(a.WG, []byte("in at last")))
	if src, _ := newer.RecvPacket(5 * time.Second); src != c.WG {
		t.Fatalf("a got a packet from %s", shortKey(src))
	}
	if st := ts.srv.Stats(); st.Sessions != 2 {
		t.Fatalf("relay holds %d sessions, want 2", st.Sessions)
	}
}

// A sender floods a client that does not read with maximum datagrams. Its
// queue holds no more than QueueBytes of buffers, far fewer packets than
// QueueDepth, where the packet count alone would let it pin 16 MiB.
func TestQueueBytesLimit(t *testing.T) {
	const maxBuf = protocol.MaxPacketLen // the buffer of a maximum datagram
	const queueBytes = 4 * maxBuf
	members := newFakeMembers()
	ts := startServer(t, Config{
		Members: members, QueueDepth: 256, QueueBytes: queueBytes, Rate: Unlimited,
		WriteTimeout: time.Minute, // the slow client stays connected throughout
	})
	flooder, slow := newNode(t, members), newNode(t, members)
	cf := relaytest.Connect(t, ts.addr, flooder)
	relaytest.Connect(t, ts.addr, slow) // never reads

	sent, _ := sendFlood(t, cf, slow.WG, protocol.MaxPacketLen)
	relaytest.WaitFor(t, "drops for the slow client", 20*time.Second, func() bool {
		return ts.metric(t, "wirelace_relay_dropped_packets_total", "reason", dropQueueFull) > 0
	})
	for range 20 {
		for _, ci := range ts.srv.Clients() {
			if ci.Key != slow.WG {
				continue
			}
			if ci.QueueBytes > queueBytes || ci.QueueLen > queueBytes/maxBuf {
				t.Fatalf("slow client's queue holds %d packets in %d bytes, want at most %d bytes", ci.QueueLen, ci.QueueBytes, queueBytes)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d maximum datagrams sent at the slow client", sent.Load())
}

func TestLogLimiter(t *testing.T) {
	l := newLogLimiter(time.Minute)
	t0 := time.Unix(1000, 0)
	if n, ok := l.allow("a", t0); !ok || n != 0 {
		t.Fatalf("first line: %d %v", n, ok)
	}
	for i := range 5 {
		if _, ok := l.allow("a", t0.Add(time.Duration(i)*time.Second)); ok {
			t.Fatalf("line %d within the interval let through", i)
		}
	}
	if _, ok := l.allow("b", t0); !ok {
		t.Fatalf("another reason held back")
	}
	if n, ok := l.allow("a", t0.Add(time.Minute)); !ok || n != 5 {
		t.Fatalf("after the interval: %d suppressed, %v; want 5, true", n, ok)
	}
}

// lineCounter counts log lines by message.
type lineCounter struct {
	mu    sync.Mutex
	lines map[string][]slog.Record
}

func (c *lineCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *lineCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *lineCounter) WithGroup(string) slog.Handler            { return c }
func (c *lineCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines[r.Message] = append(c.lines[r.Message], r)
	return nil
}

func (c *lineCounter) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines[msg])
}

// A flood of refusals makes one log line per reason and interval, not one
// per connection.
func TestRefusalLogsRateLimited(t *testing.T) {
	logs := &lineCounter{lines: make(map[string][]slog.Record)}
	members := newFakeMembers()
	ts := startServer(t, Config{
		Members: members, Logger: slog.New(logs), MaxHandshakesPerIP: 1,
		AuthTimeout: time.Minute, RefusalLogInterval: time.Hour,
	})
	flood(t, ts.addr, "127.0.0.1", 50)
	stranger := newNode(t, nil)
	for i := range 20 {
		// Each from its own address: the limit is one handshake at a time.
		if err := relaytest.DialFrom(t, ts.addr, fmt.Sprintf("127.0.2.%d", i+1)).Auth(stranger); err == nil {
			t.Fatalf("stranger authenticated")
		}
	}
	relaytest.WaitFor(t, "refusals counted", 5*time.Second, func() bool {
		return ts.refused(t, refusedSourceHandshakes) == 49 &&
			ts.metric(t, "wirelace_relay_auth_failures_total", "reason", authUnknownKey) == 20
	})
	if got := logs.count("relay connection refused: too many handshakes in progress"); got != 1 {
		t.Errorf("%d log lines for 49 refused connections, want 1", got)
	}
	if got := logs.count("relay client refused"); got != 1 {
		t.Errorf("%d log lines for 20 refused clients, want 1", got)
	}
}

func TestSourceOf(t *testing.T) {
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{tcp("192.0.2.7:4242"), "192.0.2.7/32"},
		{tcp("[::ffff:192.0.2.7]:4242"), "192.0.2.7/32"}, // from a dual-stack listener
		{tcp("[2001:db8:1:2:3:4:5:6]:4242"), "2001:db8:1:2::/64"},
		{tcp("[2001:db8:1:2:ffff::1]:1"), "2001:db8:1:2::/64"}, // the same host's /64
		{&net.UnixAddr{Name: "@relay", Net: "unix"}, "invalid Prefix"},
	} {
		if got := sourceOf(tc.addr).String(); got != tc.want {
			t.Errorf("sourceOf(%v) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}
