package nat

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wirelace/wirelace/api/vocab"
	"github.com/wirelace/wirelace/relay/stunserver"
)

// Integration on loopback with the real STUN server. Every 127.x address is
// local on Linux, so 127.0.0.2 and 127.0.0.3 serve as further server IPs
// without root.

// slack is what a loaded CI machine may add to a timeout.
const slack = 500 * time.Millisecond

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startSTUN runs a STUN server on ip, with an RFC 5780 alternate on altIP
// unless it is empty. Port 0 is used; the alternate pairing needs the
// alternate's port free on the primary IP too, so clashes are retried.
func startSTUN(t *testing.T, ip, altIP string) *stunserver.Server {
	t.Helper()
	cfg := stunserver.Config{Listen: ip + ":0", Logger: testLogger(t), Registry: prometheus.NewRegistry()}
	if altIP != "" {
		cfg.AltListen = altIP + ":0"
	}
	var s *stunserver.Server
	var err error
	for range 5 {
		cfg.Registry = prometheus.NewRegistry()
		if s, err = stunserver.Listen(cfg); err == nil {
			break
		}
	}
	if err != nil {
		t.Skipf("cannot run a STUN server on %s/%s: %v", ip, altIP, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("STUN server: %v", err)
		}
	})
	return s
}

// udpSender is the Sender of a plain UDP socket, standing in for the Bind.
type udpSender struct{ conn *net.UDPConn }

func (u udpSender) SendTo(pkt []byte, to netip.AddrPort) error {
	if _, err := u.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		return err
	}
	return nil
}

// listen opens a UDP socket on 127.0.0.1 closed at the end of the test.
func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// receive feeds what conn receives to handle until the test ends, as the
// Bind's receive path does. admit filters sources (a NAT); nil admits all.
func receive(t *testing.T, conn *net.UDPConn, handle func([]byte, netip.AddrPort) bool, admit func(netip.AddrPort) bool) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			if admit == nil || admit(from) {
				handle(buf[:n], from)
			}
		}
	})
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
}

// fakeNAT is a userspace NAT in front of a Client: endpoint-independent
// mapping uses one socket for every destination, endpoint-dependent mapping
// one per destination (so each sees another port); filtering admits answers
// by what was sent before, as RFC 4787 describes.
type fakeNAT struct {
	t         *testing.T
	dependent bool
	filter    filtering
	client    *Client

	mu    sync.Mutex
	socks map[netip.AddrPort]*net.UDPConn // by destination; the zero key when independent
	sent  map[netip.AddrPort]bool
}

func newFakeNAT(t *testing.T, dependent bool, f filtering) (*fakeNAT, *Client) {
	n := &fakeNAT{t: t, dependent: dependent, filter: f,
		socks: make(map[netip.AddrPort]*net.UDPConn), sent: make(map[netip.AddrPort]bool)}
	n.client = NewClient(n, testLogger(t))
	return n, n.client
}

func (n *fakeNAT) SendTo(pkt []byte, to netip.AddrPort) error {
	n.mu.Lock()
	n.sent[to] = true
	key := netip.AddrPort{}
	if n.dependent {
		key = to
	}
	conn, ok := n.socks[key]
	if !ok {
		// Not listen(): this runs on the client's goroutines, where
		// t.Fatal must not be called.
		var err error
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			n.mu.Unlock()
			return err
		}
		n.socks[key] = conn
		receive(n.t, conn, n.client.HandlePacket, n.admits)
	}
	n.mu.Unlock()
	_, err := conn.WriteToUDPAddrPort(pkt, to)
	return err
}

func (n *fakeNAT) admits(from netip.AddrPort) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch n.filter {
	case endpointIndependent:
		return true
	case addressDependent:
		for a := range n.sent {
			if a.Addr() == from.Addr() {
				return true
			}
		}
		return false
	default:
		return n.sent[from]
	}
}

// servers starts the usual pair: rfc5780 on 127.0.0.1 with its alternate on
// 127.0.0.3, and plain on 127.0.0.2.
func servers(t *testing.T) (rfc5780, plain *stunserver.Server) {
	return startSTUN(t, "127.0.0.1", "127.0.0.3"), startSTUN(t, "127.0.0.2", "")
}

func classifyOK(t *testing.T, c *Client, servers []netip.AddrPort, local []netip.Addr) (Result, time.Duration) {
	t.Helper()
	start := time.Now()
	res, err := c.Classify(context.Background(), servers, local)
	if err != nil {
		t.Fatalf("Classify: %v", err)
	}
	took := time.Since(start)
	t.Logf("%s in %v: %s (mapped %v)", res.Type, took.Round(time.Millisecond), res.Reason, res.Mapped)
	if took > bindingTimeout+filterTimeout+slack {
		t.Errorf("Classify took %v, bound is %v", took, bindingTimeout+filterTimeout)
	}
	return res, took
}

func TestLoopbackOpen(t *testing.T) {
	t.Parallel()
	s1, s2 := servers(t)
	conn := listen(t)
	c := NewClient(udpSender{conn}, testLogger(t))
	receive(t, conn, c.HandlePacket, nil)

	self := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	res, _ := classifyOK(t, c, []netip.AddrPort{s1.Addr(), s2.Addr()}, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if res.Type != vocab.NATOpen {
		t.Errorf("Type = %q, want %q", res.Type, vocab.NATOpen)
	}
	if len(res.Mapped) != 1 || res.Mapped[0] != self {
		t.Errorf("Mapped = %v, want [%s]", res.Mapped, self)
	}
	if !res.MappingIndependent || !res.FilteringTested {
		t.Errorf("MappingIndependent %v, FilteringTested %v; want both", res.MappingIndependent, res.FilteringTested)
	}

	// Without knowing its own address, the node sees what no NAT looks
	// like from outside: a full cone.
	res, _ = classifyOK(t, c, []netip.AddrPort{s1.Addr(), s2.Addr()}, nil)
	if res.Type != vocab.NATCone {
		t.Errorf("without local addresses: Type = %q, want %q", res.Type, vocab.NATCone)
	}
}

func TestLoopbackUDPBlocked(t *testing.T) {
	t.Parallel()
	// Sockets that read and never answer: servers that are unreachable.
	var blackholes []netip.AddrPort
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		bh, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ip+":0")))
		if err != nil {
			t.Skipf("listen on %s: %v", ip, err)
		}
		receive(t, bh, func([]byte, netip.AddrPort) bool { return true }, nil)
		blackholes = append(blackholes, bh.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	conn := listen(t)
	c := NewClient(udpSender{conn}, testLogger(t))
	receive(t, conn, c.HandlePacket, nil)

	res, took := classifyOK(t, c, blackholes, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if res.Type != vocab.NATUDPBlocked || len(res.Mapped) != 0 {
		t.Errorf("Type = %q, Mapped = %v; want %q and none", res.Type, res.Mapped, vocab.NATUDPBlocked)
	}
	if took < bindingTimeout || took > bindingTimeout+slack {
		t.Errorf("took %v, want about %v", took, bindingTimeout)
	}
}

func TestLoopbackFakeNAT(t *testing.T) {
	t.Parallel()
	s1, s2 := servers(t)
	both := []netip.AddrPort{s1.Addr(), s2.Addr()}
	only5780 := []netip.AddrPort{s1.Addr()}
	onlyPlain := []netip.AddrPort{s2.Addr()}

	cases := []struct {
		name        string
		dependent   bool
		filter      filtering
		servers     []netip.AddrPort
		want        vocab.NATType
		independent bool
		tested      bool
		reason      string
	}{
		{"full cone", false, endpointIndependent, both, vocab.NATCone, true, true, "endpoint-independent filtering"},
		{"restricted cone", false, addressDependent, both, vocab.NATConeRestricted, true, true, "address-dependent filtering"},
		{"port-restricted cone", false, addressAndPortDependent, both, vocab.NATConePortRestricted, true, true, "address-and-port-dependent filtering"},
		// Round one already shows it: no filtering test.
		{"symmetric", true, addressAndPortDependent, both, vocab.NATSymmetric, false, false, "endpoint-dependent mapping"},
		// One server: its OTHER-ADDRESS gives the second mapping, and the
		// send there spoils the change-IP test (see permissionMemory).
		{"one RFC 5780 server, port-restricted", false, addressAndPortDependent, only5780, vocab.NATConePortRestricted, true, true, "address-and-port-dependent filtering"},
		{"one RFC 5780 server, full cone seen as restricted", false, endpointIndependent, only5780, vocab.NATConeRestricted, true, true, "may be less strict"},
		{"one RFC 5780 server, symmetric", true, endpointIndependent, only5780, vocab.NATSymmetric, false, true, "endpoint-dependent mapping"},
		{"one plain server", false, addressAndPortDependent, onlyPlain, vocab.NATUnknown, false, false, "needs two server IPs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, c := newFakeNAT(t, tc.dependent, tc.filter)
			res, _ := classifyOK(t, c, tc.servers, nil)
			if res.Type != tc.want {
				t.Errorf("Type = %q, want %q", res.Type, tc.want)
			}
			if res.MappingIndependent != tc.independent || res.FilteringTested != tc.tested {
				t.Errorf("MappingIndependent %v, FilteringTested %v; want %v, %v", res.MappingIndependent, res.FilteringTested, tc.independent, tc.tested)
			}
			if !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("Reason %q lacks %q", res.Reason, tc.reason)
			}
			wantMapped := 1
			if tc.dependent {
				wantMapped = 2
			}
			if len(res.Mapped) != wantMapped {
				t.Errorf("Mapped = %v, want %d addresses", res.Mapped, wantMapped)
			}
		})
	}
}

// A send to an OTHER-ADDRESS in one classification spoils the change-IP
// test of the next ones: the NAT would admit that address anyway.
func TestLoopbackPermissionMemory(t *testing.T) {
	t.Parallel()
	s1, s2 := servers(t)
	_, c := newFakeNAT(t, false, endpointIndependent)

	res, _ := classifyOK(t, c, []netip.AddrPort{s1.Addr(), s2.Addr()}, nil)
	if res.Type != vocab.NATCone {
		t.Fatalf("first run: Type = %q, want %q", res.Type, vocab.NATCone)
	}
	classifyOK(t, c, []netip.AddrPort{s1.Addr()}, nil) // asks OTHER-ADDRESS
	res, _ = classifyOK(t, c, []netip.AddrPort{s1.Addr(), s2.Addr()}, nil)
	if res.Type != vocab.NATConeRestricted || !strings.Contains(res.Reason, "proves nothing") {
		t.Errorf("after a send to OTHER-ADDRESS: Type = %q (%s), want %q from a spoilt test", res.Type, res.Reason, vocab.NATConeRestricted)
	}
}
