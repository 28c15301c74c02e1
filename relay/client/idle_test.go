package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/relay/protocol"
)

func TestSessionIdle(t *testing.T) {
	for _, tc := range []struct {
		announced, want time.Duration
		clamped         bool
	}{
		{0, defaultIdleTimeout, false}, // none announced
		{time.Millisecond, protocol.MinIdleTimeout, true},
		{protocol.MinIdleTimeout - time.Millisecond, protocol.MinIdleTimeout, true},
		{protocol.MinIdleTimeout, protocol.MinIdleTimeout, false},
		{30 * time.Second, 30 * time.Second, false},
		{protocol.MaxIdleTimeout, protocol.MaxIdleTimeout, false},
		{49 * 24 * time.Hour, protocol.MaxIdleTimeout, true},
		// The most the wire format can say.
		{math.MaxUint32 * time.Millisecond, protocol.MaxIdleTimeout, true},
	} {
		got, clamped := sessionIdle(tc.announced)
		if got != tc.want || clamped != tc.clamped {
			t.Errorf("sessionIdle(%v) = %v, %v; want %v, %v", tc.announced, got, clamped, tc.want, tc.clamped)
		}
	}
}

// syncBuffer is a log sink the test reads while the client writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A hostile relay announces a 1 ms idle timeout. The client must not answer
// with a KeepAlive every millisecond: it keeps to the minimum, and says so
// at debug level.
func TestHostileIdleAnnouncementClamped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wg, _ := wgtypes.GeneratePrivateKey()
	ctl, _ := wgtypes.GeneratePrivateKey()
	var logs syncBuffer
	c, err := New(Config{
		Addr: ln.Addr().String(), PublicKey: wg.PublicKey(), ControlKey: ctl,
		Receive: func(wgtypes.Key, []byte) {},
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r, w := protocol.NewReader(bufio.NewReader(conn)), protocol.NewWriter(bufio.NewWriter(conn))
	hello, _, err := protocol.NewServerHello(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	send := func(typ protocol.Type, payload []byte) {
		t.Helper()
		if err := w.WriteFrame(typ, payload); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	send(protocol.TypeServerHello, hello.Append(nil))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if typ, _, err := r.ReadFrame(); err != nil || typ != protocol.TypeClientAuth {
		t.Fatalf("ClientAuth: %v %v", typ, err)
	}
	send(protocol.TypeServerAuthOK, protocol.AppendAuthOK(nil, time.Millisecond))

	const watch = 500 * time.Millisecond
	keepAlives := 0
	conn.SetReadDeadline(time.Now().Add(watch))
	for {
		typ, _, err := r.ReadFrame()
		if err != nil {
			break // the deadline: the watch is over
		}
		if typ == protocol.TypeKeepAlive {
			keepAlives++
		}
	}
	// At the minimum idle timeout the first KeepAlive is due after
	// MinIdleTimeout/keepAliveDivisor, well after the watch.
	if keepAlives > 0 {
		t.Fatalf("client sent %d KeepAlives in %v after a 1ms idle announcement", keepAlives, watch)
	}
	if !c.Connected() {
		t.Fatalf("client dropped the session")
	}
	if out := logs.String(); !strings.Contains(out, "idle timeout out of range; clamped") || !strings.Contains(out, "idle_timeout="+protocol.MinIdleTimeout.String()) {
		t.Fatalf("no debug line about the clamp in:\n%s", out)
	}
}
