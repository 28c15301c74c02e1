package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/testcert"
	"github.com/wirelace/wirelace/relay/client"
	"github.com/wirelace/wirelace/relay/server"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != ":8443" || o.stunListen != ":3478" || o.metricsListen != ":9090" ||
		o.rate != server.DefaultRate || o.burst != server.DefaultBurst || o.queue != server.DefaultQueueDepth ||
		o.idleTimeout != server.DefaultIdleTimeout || o.logLevel != slog.LevelInfo ||
		o.queueBytes != server.DefaultQueueBytes || o.maxSessions != server.DefaultMaxSessions ||
		o.maxHandshakes != server.DefaultMaxHandshakes || o.maxHandshakesPerIP != server.DefaultMaxHandshakesPerIP ||
		o.refusalLogInterval != server.DefaultRefusalLogInterval {
		t.Fatalf("defaults: %+v", o)
	}
	o, err = parseFlags([]string{"--queue-bytes", "2Mi", "--max-sessions", "10", "--max-handshakes", "5",
		"--max-handshakes-per-ip", "2", "--refusal-log-interval", "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if o.queueBytes != 2<<20 || o.maxSessions != 10 || o.maxHandshakes != 5 || o.maxHandshakesPerIP != 2 || o.refusalLogInterval != time.Minute {
		t.Fatalf("parsed limits: %+v", o)
	}
	o, err = parseFlags([]string{"--rate", "1Gi", "--burst", "8Mi", "--log-level", "debug", "--idle-timeout", "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if o.rate != 1<<30 || o.burst != 8<<20 || o.logLevel != slog.LevelDebug || o.idleTimeout != time.Minute {
		t.Fatalf("parsed: %+v", o)
	}
	if o, err = parseFlags([]string{"--rate", "0", "--burst", "1"}); err != nil || o.rate != server.Unlimited {
		t.Fatalf("--rate 0: %+v %v", o, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "100MB"}, "byte count"},
		{[]string{"--rate", "-5"}, "negative"},
		{[]string{"--burst", "1k"}, "--burst 1k is below the largest relay frame"},
		{[]string{"--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--queue", "0"}, "--queue 0"},
		{[]string{"--idle-timeout", "0s"}, "--idle-timeout"},
		{[]string{"--idle-timeout", "1s"}, "--idle-timeout 1s: must be between 5s and 5m0s"},
		{[]string{"--idle-timeout", "1h"}, "--idle-timeout 1h0m0s: must be between"},
		{[]string{"--queue-bytes", "1Ki"}, "--queue-bytes 1Ki is below the largest datagram"},
		{[]string{"--max-sessions", "0"}, "--max-sessions 0"},
		{[]string{"--max-handshakes", "-1"}, "--max-handshakes -1"},
		{[]string{"--max-handshakes-per-ip", "0"}, "--max-handshakes-per-ip 0"},
		{[]string{"--refusal-log-interval", "0s"}, "--refusal-log-interval"},
		{[]string{"--stun-listen", "", "--stun-alt-listen", "1.2.3.4:3479"}, "--stun-alt-listen needs --stun-listen"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		_, err := parseFlags(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error is not one line: %q", tc.args, err)
		}
	}
}

func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func TestPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	o, err := parseFlags([]string{"--listen", busy.Addr().String(), "--stun-listen", "", "--metrics-listen", ""})
	if err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), o, quietLog(), noMembers)
	want := "--listen " + busy.Addr().String() + ": address already in use"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func noMembers(context.Context, string, *slog.Logger) (server.Members, func(), error) {
	return nil, nil, errors.New("not reached")
}

type staticMembers map[wgtypes.Key]wgtypes.Key

func (m staticMembers) Lookup(k wgtypes.Key) (wgtypes.Key, bool) {
	ctl, ok := m[k]
	return ctl, ok
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The whole binary, minus the Kubernetes API: TLS relay, STUN, metrics and
// readiness, and a clean stop.
func TestRun(t *testing.T) {
	certFile, keyFile, pool := testcert.Files(t)
	keys := func() (wgtypes.Key, wgtypes.Key) {
		wg, _ := wgtypes.GeneratePrivateKey()
		ctl, _ := wgtypes.GeneratePrivateKey()
		return wg.PublicKey(), ctl
	}
	awg, actl := keys()
	bwg, bctl := keys()
	members := staticMembers{awg: actl.PublicKey(), bwg: bctl.PublicKey()}

	relayAddr, stunAddr, metricsAddr := freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp")
	o, err := parseFlags([]string{
		"--listen", relayAddr, "--tls-cert", certFile, "--tls-key", keyFile,
		"--stun-listen", stunAddr, "--metrics-listen", metricsAddr,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, o, quietLog(), func(context.Context, string, *slog.Logger) (server.Members, func(), error) {
			return members, func() {}, nil
		})
	}()

	waitHTTP(t, "http://"+metricsAddr+"/readyz", http.StatusOK)

	// Two nodes relay a packet over TLS.
	got := make(chan string, 1)
	startClient := func(wg, ctl wgtypes.Key) *client.Client {
		c, err := client.New(client.Config{
			Addr: relayAddr, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
			PublicKey: wg, ControlKey: ctl, Logger: quietLog(),
			Receive: func(src wgtypes.Key, pkt []byte) { got <- string(pkt) },
		})
		if err != nil {
			t.Fatal(err)
		}
		go c.Run(ctx)
		return c
	}
	a, b := startClient(awg, actl), startClient(bwg, bctl)
	deadline := time.Now().Add(5 * time.Second)
	for !a.Connected() || !b.Connected() {
		if time.Now().After(deadline) {
			t.Fatalf("clients did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.Send(bwg, []byte("through the binary")); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-got:
		if msg != "through the binary" {
			t.Fatalf("got %q", msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("packet did not arrive")
	}

	// STUN answers.
	conn, err := net.Dial("udp4", stunAddr)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := stun.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	var xor stun.XORMappedAddress
	if err := sc.Do(stun.MustBuild(stun.TransactionID, stun.BindingRequest), func(e stun.Event) {
		if e.Error == nil {
			xor.GetFrom(e.Message)
		}
	}); err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if xor.Port != conn.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("STUN mapped %v, want %v", xor, conn.LocalAddr())
	}

	// Metrics show the relay and STUN.
	body := getBody(t, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{"wirelace_relay_clients 2", "wirelace_relay_relayed_packets_total 1", `wirelace_stun_requests_total{result="ok"} 1`, "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	cancel() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not stop")
	}
}

func waitHTTP(t *testing.T, url string, status int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v %v", url, resp, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
