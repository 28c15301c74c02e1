package server

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wirelace/wirelace/relay/internal/relaytest"
	"github.com/wirelace/wirelace/relay/protocol"
)

func TestRelayBothWays(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members})
	a, b := newNode(t, members), newNode(t, members)
	ca, cb := relaytest.Connect(t, ts.addr, a), relaytest.Connect(t, ts.addr, b)

	must(t, ca.Send(b.WG, []byte("from a")))
	src, pkt := cb.RecvPacket(5 * time.Second)
	if src != a.WG || string(pkt) != "from a" {
		t.Fatalf("b got %q from %s, want %q from %s", pkt, shortKey(src), "from a", shortKey(a.WG))
	}
	must(t, cb.Send(a.WG, []byte("from b")))
	src, pkt = ca.RecvPacket(5 * time.Second)
	if src != b.WG || string(pkt) != "from b" {
		t.Fatalf("a got %q from %s, want %q from %s", pkt, shortKey(src), "from b", shortKey(b.WG))
	}

	// A maximum-size datagram goes through intact.
	big := bytes.Repeat([]byte{0x5a}, protocol.MaxPacketLen)
	must(t, ca.Send(b.WG, big))
	if _, pkt := cb.RecvPacket(5 * time.Second); !bytes.Equal(pkt, big) {
		t.Fatalf("maximum datagram arrived with %d bytes", len(pkt))
	}

	relaytest.WaitFor(t, "relayed metrics", 5*time.Second, func() bool {
		return ts.metric(t, "wirelace_relay_relayed_packets_total") == 3
	})
	if got, want := ts.metric(t, "wirelace_relay_relayed_bytes_total"), float64(6+6+len(big)); got != want {
		t.Errorf("relayed bytes %v, want %v", got, want)
	}
	if got := ts.metric(t, "wirelace_relay_clients"); got != 2 {
		t.Errorf("clients gauge %v, want 2", got)
	}
}

func TestUnknownDestination(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members})
	a := newNode(t, members)
	ca := relaytest.Connect(t, ts.addr, a)
	nobody := relaytest.NewKey(t).PublicKey()
	must(t, ca.Send(nobody, []byte("x")))
	must(t, ca.Send(nobody, []byte("y"))) // counted, but told only once
	typ, p, err := ca.Recv(5 * time.Second)
	if err != nil || typ != protocol.TypePeerGone {
		t.Fatalf("got %v %v, want PeerGone", typ, err)
	}
	if k, err := protocol.ParseKey(p); err != nil || k != nobody {
		t.Fatalf("PeerGone for %v (%v), want %s", k, err, shortKey(nobody))
	}
	relaytest.WaitFor(t, "drop count", 5*time.Second, func() bool {
		return ts.metric(t, "wirelace_relay_dropped_packets_total", "reason", dropUnknownDestination) == 2
	})
}

func TestAuthRefused(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members})
	victim := newNode(t, members)
	attacker := newNode(t, members)

	cases := []struct {
		name   string
		auth   func(c *rawClient) protocol.ClientAuth
		reason string
		text   string
	}{{
		name: "key in no MeshNode",
		auth: func(c *rawClient) protocol.ClientAuth {
			stranger := newNode(t, nil)
			a, _ := protocol.NewClientAuth(c.Hello, stranger.WG, stranger.Ctl, rand.Reader)
			return a
		},
		reason: authUnknownKey, text: "in no MeshNode",
	}, {
		// A member claims another node's WireGuard key with its own,
		// valid, control key.
		name: "other node's WireGuard key",
		auth: func(c *rawClient) protocol.ClientAuth {
			a, _ := protocol.NewClientAuth(c.Hello, victim.WG, attacker.Ctl, rand.Reader)
			return a
		},
		reason: authControlMismatch, text: "control key does not match",
	}, {
		// It names the victim's control public key too, but cannot make
		// the proof without the victim's private key.
		name: "other node's keys, bad signature",
		auth: func(c *rawClient) protocol.ClientAuth {
			a, _ := protocol.NewClientAuth(c.Hello, victim.WG, attacker.Ctl, rand.Reader)
			a.ControlKey = victim.Ctl.PublicKey()
			return a
		},
		reason: authBadProof, text: "does not verify",
	}, {
		name: "tampered proof",
		auth: func(c *rawClient) protocol.ClientAuth {
			a, _ := protocol.NewClientAuth(c.Hello, attacker.WG, attacker.Ctl, rand.Reader)
			a.Proof = append([]byte(nil), a.Proof...)
			a.Proof[3] ^= 0x80
			return a
		},
		reason: authBadProof, text: "does not verify",
	}, {
		name: "wrong version",
		auth: func(c *rawClient) protocol.ClientAuth {
			a, _ := protocol.NewClientAuth(c.Hello, attacker.WG, attacker.Ctl, rand.Reader)
			a.Version = protocol.Version + 1
			return a
		},
		reason: authBadVersion, text: "version",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := ts.metric(t, "wirelace_relay_auth_failures_total", "reason", tc.reason)
			c := relaytest.Dial(t, ts.addr)
			err := c.SendAuth(tc.auth(c))
			if err == nil || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want a refusal mentioning %q", err, tc.text)
			}
			c.ExpectClosed(5 * time.Second)
			if got := ts.metric(t, "wirelace_relay_auth_failures_total", "reason", tc.reason); got != before+1 {
				t.Fatalf("auth failures{%s} = %v, want %v", tc.reason, got, before+1)
			}
		})
	}
	// The victim still gets in.
	relaytest.Connect(t, ts.addr, victim)
}

func TestReplayedAuthRefused(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members})
	n := newNode(t, members)
	c1 := relaytest.Dial(t, ts.addr)
	a, err := protocol.NewClientAuth(c1.Hello, n.WG, n.Ctl, rand.Reader)
	must(t, err)
	must(t, c1.SendAuth(a))

	// An eavesdropper replays the recorded ClientAuth on a new connection.
	c2 := relaytest.Dial(t, ts.addr)
	if err := c2.SendAuth(a); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("replayed ClientAuth: got %v, want refusal", err)
	}
}

func TestAuthTimeout(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members, AuthTimeout: 200 * time.Millisecond})
	c := relaytest.Dial(t, ts.addr) // reads ServerHello, then says nothing
	start := time.Now()
	c.ExpectClosed(5 * time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v, want about 200ms", d)
	}
	relaytest.WaitFor(t, "timeout counted", 5*time.Second, func() bool {
		return ts.metric(t, "wirelace_relay_auth_failures_total", "reason", authTimeout) == 1
	})
}

func TestGarbageBeforeAuth(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members})
	c := relaytest.Dial(t, ts.addr)
	fmt.Fprintf(c.Conn, "GET / HTTP/1.1\r\nHost: relay\r\n\r\n")
	c.ExpectClosed(5 * time.Second)
	relaytest.WaitFor(t, "bad frame counted", 5*time.Second, func() bool {
		return ts.metric(t, "wirelace_relay_auth_failures_total", "reason", authBadFrame) == 1
	})
}

// Bad frames from one client close that client's connection and nothing
// else.
func TestBadFramesCloseOnlyThatConnection(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members})
	a, b := newNode(t, members), newNode(t, members)
	ca, cb := relaytest.Connect(t, ts.addr, a), relaytest.Connect(t, ts.addr, b)

	header := func(typ protocol.Type, n uint32) []byte {
		h := []byte{byte(typ), 0, 0, 0, 0}
		binary.BigEndian.PutUint32(h[1:], n)
		return h
	}
	cases := map[string]struct {
		data      []byte
		closeSend bool // end the stream after data, so a short frame is truncated
	}{
		"oversized":         {data: header(protocol.TypeSendPacket, protocol.MaxPayloadLen+1)},
		"oversized 4GiB":    {data: header(protocol.TypeSendPacket, 0xffffffff)},
		"truncated payload": {data: append(header(protocol.TypeSendPacket, 100), make([]byte, 40)...), closeSend: true},
		"truncated header":  {data: []byte{byte(protocol.TypeSendPacket), 0, 0}, closeSend: true},
		"unknown type":      {data: append(header(0x42, 3), "abc"...)},
		"server-only type":  {data: append(header(protocol.TypeRecvPacket, 40), make([]byte, 40)...)},
		"packet too short":  {data: append(header(protocol.TypeSendPacket, 10), make([]byte, 10)...)},
		"keepalive payload": {data: append(header(protocol.TypeKeepAlive, 1), 0)},
		"random bytes":      {data: []byte("\x9e\x01\x7f\x00\x00\x10garbage garbage garbage")},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			bad := newNode(t, members)
			cbad := relaytest.Connect(t, ts.addr, bad)
			if _, err := cbad.Conn.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			if tc.closeSend {
				cbad.Conn.(*net.TCPConn).CloseWrite()
			}
			cbad.ExpectClosed(5 * time.Second)

			// The others carry on.
			must(t, ca.Send(b.WG, []byte(name)))
			if src, pkt := cb.RecvPacket(5 * time.Second); src != a.WG || string(pkt) != name {
				t.Fatalf("after %s: b got %q from %s", name, pkt, shortKey(src))
			}
		})
	}
	relaytest.WaitFor(t, "protocol errors counted", 5*time.Second, func() bool {
		return ts.metric(t, "wirelace_relay_disconnects_total", "reason", closeProtocol) == float64(len(cases))
	})
}

func TestNewerConnectionReplacesOlder(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members})
	a, b := newNode(t, members), newNode(t, members)
	old := relaytest.Connect(t, ts.addr, a)
	cb := relaytest.Connect(t, ts.addr, b)
	newer := relaytest.Connect(t, ts.addr, a)

	if reason := old.ExpectClosed(5 * time.Second); !strings.Contains(reason, "replaced") {
		t.Fatalf("old connection closed with %q, want a ServerClose about being replaced", reason)
	}
	must(t, cb.Send(a.WG, []byte("to the newer")))
	if src, pkt := newer.RecvPacket(5 * time.Second); src != b.WG || string(pkt) != "to the newer" {
		t.Fatalf("newer got %q from %s", pkt, shortKey(src))
	}
	if got := ts.metric(t, "wirelace_relay_clients"); got != 2 {
		t.Fatalf("clients gauge %v after replacement, want 2", got)
	}
}

func TestMemberRemovedClosesConnection(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members})
	a, b, c := newNode(t, members), newNode(t, members), newNode(t, members)
	ca, cb, cc := relaytest.Connect(t, ts.addr, a), relaytest.Connect(t, ts.addr, b), relaytest.Connect(t, ts.addr, c)

	members.remove(a.WG)
	members.set(b.WG, relaytest.NewKey(t).PublicKey()) // b's control key rotated
	ts.srv.MembersChanged()
	for name, cl := range map[string]*rawClient{"removed": ca, "rotated": cb} {
		if reason := cl.ExpectClosed(5 * time.Second); !strings.Contains(reason, "MeshNode removed") {
			t.Fatalf("%s: closed with %q, want a ServerClose about membership", name, reason)
		}
	}
	// c is untouched, and a cannot come back.
	must(t, cc.KeepAlive())
	relaytest.WaitFor(t, "revocations counted", 5*time.Second, func() bool {
		return ts.metric(t, "wirelace_relay_disconnects_total", "reason", closeRevoked) == 2
	})
	if got := ts.metric(t, "wirelace_relay_clients"); got != 1 {
		t.Fatalf("clients gauge %v, want 1", got)
	}
	if err := relaytest.Dial(t, ts.addr).Auth(a); err == nil {
		t.Fatalf("removed member authenticated again")
	}
}

func TestIdleTimeout(t *testing.T) {
	members := newFakeMembers()
	const idle = 300 * time.Millisecond
	ts := startServer(t, Config{Members: members, IdleTimeout: idle})
	quiet, chatty, other := newNode(t, members), newNode(t, members), newNode(t, members)
	cq, cc := relaytest.Connect(t, ts.addr, quiet), relaytest.Connect(t, ts.addr, chatty)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(idle / 4)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if cc.KeepAlive() != nil {
					return
				}
			}
		}
	})
	start := time.Now()
	cq.ExpectClosed(5 * time.Second)
	if d := time.Since(start); d < idle/2 || d > 3*idle {
		t.Errorf("quiet client closed after %v, want about %v", d, idle)
	}
	time.Sleep(3 * idle)
	co := relaytest.Connect(t, ts.addr, other)
	must(t, co.Send(chatty.WG, []byte("still here?")))
	if src, _ := cc.RecvPacket(5 * time.Second); src != other.WG {
		t.Fatalf("chatty client got a packet from %s", shortKey(src))
	}
	close(stop)
	wg.Wait()
	relaytest.WaitFor(t, "idle close counted", 5*time.Second, func() bool {
		return ts.metric(t, "wirelace_relay_disconnects_total", "reason", closeIdle) == 1
	})
}

// A healthy session that goes quiet after a packet stays up. The relay's
// KeepAlives to it must each get their own write deadline: one left from
// the last packet expired under them and dropped the session with
// write_error, costing the node its relay path every few idle intervals.
func TestQuietSessionSurvivesKeepAlives(t *testing.T) {
	members := newFakeMembers()
	const (
		idle     = 600 * time.Millisecond // the relay sends a KeepAlive every idle/3
		writeTO  = 100 * time.Millisecond // far shorter than a KeepAlive interval
		quietFor = 10 * idle / keepAliveDivisor
	)
	ts := startServer(t, Config{Members: members, IdleTimeout: idle, WriteTimeout: writeTO})
	a, b := newNode(t, members), newNode(t, members)
	ca, cb := relaytest.Connect(t, ts.addr, a), relaytest.Connect(t, ts.addr, b)

	// One packet arms a write deadline on b's connection; then nothing
	// but KeepAlives, both ways, for ten KeepAlive intervals.
	must(t, ca.Send(b.WG, []byte("then quiet")))
	cb.RecvPacket(5 * time.Second)
	keepAlives := 0
	for end := time.Now().Add(quietFor); time.Now().Before(end); {
		must(t, ca.KeepAlive())
		must(t, cb.KeepAlive())
		cb.Conn.SetReadDeadline(time.Now().Add(idle / 4))
		typ, _, err := cb.R.ReadFrame()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
		case err != nil:
			t.Fatalf("quiet session dropped: %v (disconnects by write_error: %v)",
				err, ts.metric(t, "wirelace_relay_disconnects_total", "reason", closeWriteError))
		case typ == protocol.TypeKeepAlive:
			keepAlives++
		default:
			t.Fatalf("unexpected %v", typ)
		}
	}
	if keepAlives < 5 {
		t.Fatalf("%d KeepAlives from the relay in %v, want about 10", keepAlives, quietFor)
	}
	must(t, ca.Send(b.WG, []byte("still there")))
	if src, pkt := cb.RecvPacket(5 * time.Second); src != a.WG || string(pkt) != "still there" {
		t.Fatalf("b got %q from %s", pkt, shortKey(src))
	}
	if got := ts.metric(t, "wirelace_relay_disconnects_total", "reason", closeWriteError); got != 0 {
		t.Fatalf("%v sessions closed with write_error", got)
	}
}

// A client that stops reading loses its own packets and nothing else: the
// relay keeps serving everyone else at full speed.
func TestSlowReaderDoesNotStallOthers(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{
		Members:      members,
		QueueDepth:   64,
		Rate:         Unlimited,
		WriteTimeout: 20 * time.Second, // the slow client stays connected throughout
	})
	flooder, slow, c, d := newNode(t, members), newNode(t, members), newNode(t, members), newNode(t, members)
	cf := relaytest.Connect(t, ts.addr, flooder)
	relaytest.Connect(t, ts.addr, slow) // never reads
	cc, cd := relaytest.Connect(t, ts.addr, c), relaytest.Connect(t, ts.addr, d)

	// Flood the slow client until its socket buffers and its queue are full
	// and the relay is dropping.
	flooded, stop := sendFlood(t, cf, slow.WG, 1024)
	relaytest.WaitFor(t, "drops for the slow client", 20*time.Second, func() bool {
		return ts.metric(t, "wirelace_relay_dropped_packets_total", "reason", dropQueueFull) > 0
	})

	// While the flood goes on, c and d exchange packets in windows smaller
	// than a queue, so none of them may be dropped.
	const total, window = 4000, 32
	pkt := make([]byte, 1024)
	start := time.Now()
	for sent := 0; sent < total; sent += window {
		for range window {
			must(t, cc.Send(d.WG, pkt))
		}
		for range window {
			if src, _ := cd.RecvPacket(5 * time.Second); src != c.WG {
				t.Fatalf("d got a packet from %s", shortKey(src))
			}
		}
	}
	elapsed := time.Since(start)
	stop()

	t.Logf("other pair: %d packets in %v (%.0f packets/s) while %d were flooded at the slow client",
		total, elapsed, float64(total)/elapsed.Seconds(), flooded.Load())
	if elapsed > 10*time.Second {
		t.Fatalf("other pair stalled: %v for %d packets", elapsed, total)
	}
	var slowInfo *ClientInfo
	for _, ci := range ts.srv.Clients() {
		if ci.Key == slow.WG {
			slowInfo = &ci
		}
	}
	if slowInfo == nil || slowInfo.Dropped == 0 {
		t.Fatalf("no drops counted for the slow client: %+v", slowInfo)
	}
	// The flooder itself was never blocked for long and is still served.
	must(t, cc.Send(flooder.WG, []byte("hi")))
	for {
		typ, p, err := cf.Recv(5 * time.Second)
		if err != nil {
			t.Fatalf("flooder: %v", err)
		}
		if typ == protocol.TypeRecvPacket {
			if src, _, _ := protocol.ParsePacket(p); src == c.WG {
				break
			}
		}
	}
}

func TestRateLimit(t *testing.T) {
	members := newFakeMembers()
	const rate = 2e6 // bytes per second
	ts := startServer(t, Config{Members: members, Rate: rate, Burst: protocol.MaxFrameLen, QueueDepth: 4096})
	a, b := newNode(t, members), newNode(t, members)
	ca, cb := relaytest.Connect(t, ts.addr, a), relaytest.Connect(t, ts.addr, b)

	const size = 1000
	frameCost := protocol.HeaderLen + protocol.KeyLen + size
	go func() {
		pkt := make([]byte, size)
		for ca.Send(b.WG, pkt) == nil {
		}
	}()
	const window = 1500 * time.Millisecond
	start := time.Now()
	received := 0
	for time.Since(start) < window {
		if _, _, err := cb.Recv(time.Until(start.Add(window))); err != nil {
			break
		}
		received++
	}
	elapsed := time.Since(start)
	got := float64(received*frameCost) / elapsed.Seconds()
	t.Logf("relayed %.2f MB/s with a limit of %.2f MB/s", got/1e6, rate/1e6)
	// The burst allows one maximum frame on top of the rate.
	upper := (rate*elapsed.Seconds() + protocol.MaxFrameLen) / elapsed.Seconds() * 1.15
	if got > upper || got < rate*0.6 {
		t.Fatalf("relayed %.0f B/s, want about %.0f B/s (at most %.0f)", got, rate, upper)
	}
	if ts.metric(t, "wirelace_relay_rate_limited_frames_total") == 0 {
		t.Fatalf("rate limiting not counted")
	}
	ca.Conn.Close()
}

func TestShutdownTellsClients(t *testing.T) {
	members := newFakeMembers()
	ts := startServer(t, Config{Members: members})
	c := relaytest.Connect(t, ts.addr, newNode(t, members))
	go ts.stop()
	if reason := c.ExpectClosed(5 * time.Second); !strings.Contains(reason, "shutting down") {
		t.Fatalf("closed with %q, want a ServerClose about shutdown", reason)
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Errorf("no Members: want error")
	}
	if _, err := New(Config{Members: newFakeMembers(), Burst: 1000}); err == nil || !strings.Contains(err.Error(), "largest frame") {
		t.Errorf("tiny burst: got %v", err)
	}
	if _, err := New(Config{Members: newFakeMembers(), IdleTimeout: -1}); err == nil {
		t.Errorf("negative timeout: want error")
	}
	if _, err := New(Config{Members: newFakeMembers(), Rate: Unlimited, Burst: 1}); err != nil {
		t.Errorf("unlimited rate ignores burst: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
