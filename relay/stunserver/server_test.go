package stunserver

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wirelace/wirelace/internal/stunattr"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Registry = prometheus.NewRegistry()
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// The plain RFC 5389 case, through pion/stun's own client.
func TestBinding(t *testing.T) {
	s := start(t, Config{Listen: "127.0.0.1:0"})
	conn, err := net.Dial("udp4", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := stun.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var res stun.Event
	if err := c.Do(stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint), func(e stun.Event) { res = e }); err != nil {
		t.Fatal(err)
	}
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(res.Message); err != nil {
		t.Fatalf("no XOR-MAPPED-ADDRESS: %v", err)
	}
	local := conn.LocalAddr().(*net.UDPAddr)
	if !xor.IP.Equal(local.IP) || xor.Port != local.Port {
		t.Fatalf("XOR-MAPPED-ADDRESS %s, want %s", xor, local)
	}
	var origin stun.ResponseOrigin
	if err := origin.GetFrom(res.Message); err != nil || origin.Port != int(s.Addr().Port()) {
		t.Fatalf("RESPONSE-ORIGIN %v (%v), want %s", origin, err, s.Addr())
	}
	if res.Message.Contains(stun.AttrOtherAddress) {
		t.Fatalf("OTHER-ADDRESS without an alternate address")
	}
	if err := stun.Fingerprint.Check(res.Message); err != nil {
		t.Fatalf("FINGERPRINT: %v", err)
	}
}

// prober sends requests from an unconnected socket, so it sees which server
// address each answer comes from.
type prober struct {
	t    *testing.T
	conn *net.UDPConn
}

func newProber(t *testing.T, ip string) *prober {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &prober{t: t, conn: conn}
}

// ask sends a Binding request with setters to to and returns the answer and
// the address it came from.
func (p *prober) ask(to netip.AddrPort, setters ...stun.Setter) (*stun.Message, netip.AddrPort) {
	p.t.Helper()
	req := stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, setters...)...)
	if _, err := p.conn.WriteToUDPAddrPort(req.Raw, to); err != nil {
		p.t.Fatal(err)
	}
	buf := make([]byte, 1500)
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			p.t.Fatalf("no answer from %s: %v", to, err)
		}
		resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := resp.Decode(); err != nil {
			p.t.Fatal(err)
		}
		if resp.TransactionID == req.TransactionID {
			return resp, from
		}
	}
}

// silent checks that to does not answer a raw datagram.
func (p *prober) silent(to netip.AddrPort, data []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(data, to); err != nil {
		p.t.Fatal(err)
	}
	p.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 1500)
	if _, _, err := p.conn.ReadFromUDPAddrPort(buf); err == nil {
		p.t.Fatalf("answered %q", data)
	}
}

func (p *prober) local() netip.AddrPort {
	return p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func addrOf(t *testing.T, m *stun.Message, attr interface{ GetFrom(*stun.Message) error }) netip.AddrPort {
	t.Helper()
	if err := attr.GetFrom(m); err != nil {
		t.Fatalf("%T: %v", attr, err)
	}
	var ip net.IP
	var port int
	switch a := attr.(type) {
	case *stun.XORMappedAddress:
		ip, port = a.IP, a.Port
	case *stun.OtherAddress:
		ip, port = a.IP, a.Port
	case *stun.ResponseOrigin:
		ip, port = a.IP, a.Port
	}
	addr, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port))
}

func errorCode(t *testing.T, m *stun.Message) stun.ErrorCode {
	t.Helper()
	if m.Type != stun.BindingError {
		t.Fatalf("got %v, want a Binding error response", m.Type)
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	return ec.Code
}

func TestChangeRequestWithoutAlternate(t *testing.T) {
	s := start(t, Config{Listen: "127.0.0.1:0"})
	p := newProber(t, "127.0.0.1")
	resp, _ := p.ask(s.Addr(), stunattr.ChangeRequest{ChangePort: true})
	if code := errorCode(t, resp); code != stun.CodeUnknownAttribute {
		t.Fatalf("error %d, want 420", code)
	}
	var ua stun.UnknownAttributes
	if err := ua.GetFrom(resp); err != nil || len(ua) != 1 || ua[0] != stun.AttrChangeRequest {
		t.Fatalf("UNKNOWN-ATTRIBUTES %v (%v), want CHANGE-REQUEST", ua, err)
	}
}

// One IP, two ports: the usual cloud host.
func TestAlternatePort(t *testing.T) {
	s := start(t, Config{Listen: "127.0.0.1:0", AltListen: "127.0.0.1:0"})
	primary := s.Addr()
	alt, ok := s.OtherAddr()
	if !ok || alt.Port() == primary.Port() {
		t.Fatalf("OtherAddr %v %v", alt, ok)
	}
	p := newProber(t, "127.0.0.1")

	resp, from := p.ask(primary)
	if from != primary {
		t.Fatalf("plain request answered from %s, want %s", from, primary)
	}
	if got := addrOf(t, resp, &stun.XORMappedAddress{}); got != p.local() {
		t.Fatalf("XOR-MAPPED-ADDRESS %s, want %s", got, p.local())
	}
	if got := addrOf(t, resp, &stun.OtherAddress{}); got != alt {
		t.Fatalf("OTHER-ADDRESS %s, want %s", got, alt)
	}
	if got := addrOf(t, resp, &stun.ResponseOrigin{}); got != primary {
		t.Fatalf("RESPONSE-ORIGIN %s, want %s", got, primary)
	}

	// Change port: the answer comes from the other port and says so.
	resp, from = p.ask(primary, stunattr.ChangeRequest{ChangePort: true})
	if from != alt {
		t.Fatalf("change-port answered from %s, want %s", from, alt)
	}
	if got := addrOf(t, resp, &stun.ResponseOrigin{}); got != alt {
		t.Fatalf("RESPONSE-ORIGIN %s, want %s", got, alt)
	}
	if got := addrOf(t, resp, &stun.XORMappedAddress{}); got != p.local() {
		t.Fatalf("XOR-MAPPED-ADDRESS %s, want %s", got, p.local())
	}

	// Asked on the alternate, the primary is the other address.
	resp, from = p.ask(alt)
	if from != alt || addrOf(t, resp, &stun.OtherAddress{}) != primary {
		t.Fatalf("request to the alternate: from %s, OTHER-ADDRESS %s", from, addrOf(t, resp, &stun.OtherAddress{}))
	}

	// No second IP: change IP is refused rather than half-honoured.
	resp, _ = p.ask(primary, stunattr.ChangeRequest{ChangeIP: true, ChangePort: true})
	if code := errorCode(t, resp); code != stun.CodeUnknownAttribute {
		t.Fatalf("change IP with one IP: error %d, want 420", code)
	}
}

// Two IPs and two ports: every change is answered from exactly the address
// asked for.
func TestAlternateIPAndPort(t *testing.T) {
	var s *Server
	for range 5 {
		// The extra sockets take the other IP's port, which may be in use
		// on 127.0.0.2; retry with new ports.
		ss, err := Listen(Config{Listen: "127.0.0.1:0", AltListen: "127.0.0.2:0"})
		if err == nil {
			s = ss
			break
		}
		if !strings.Contains(err.Error(), "in use") {
			t.Skipf("cannot listen on 127.0.0.2: %v", err)
		}
	}
	if s == nil {
		t.Skip("no free port pairing on 127.0.0.1/127.0.0.2")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	primary := s.Addr()
	other, _ := s.OtherAddr()
	if len(s.Addrs()) != 4 {
		t.Fatalf("listening on %v, want four addresses", s.Addrs())
	}
	p := newProber(t, "127.0.0.1")
	for _, tc := range []struct {
		cr   stunattr.ChangeRequest
		want netip.AddrPort
	}{
		{stunattr.ChangeRequest{}, primary},
		{stunattr.ChangeRequest{ChangePort: true}, netip.AddrPortFrom(primary.Addr(), other.Port())},
		{stunattr.ChangeRequest{ChangeIP: true}, netip.AddrPortFrom(other.Addr(), primary.Port())},
		{stunattr.ChangeRequest{ChangeIP: true, ChangePort: true}, other},
	} {
		resp, from := p.ask(primary, tc.cr)
		if from != tc.want {
			t.Errorf("%+v: answered from %s, want %s", tc.cr, from, tc.want)
		}
		if got := addrOf(t, resp, &stun.ResponseOrigin{}); got != tc.want {
			t.Errorf("%+v: RESPONSE-ORIGIN %s, want %s", tc.cr, got, tc.want)
		}
		// OTHER-ADDRESS is relative to the answering address.
		wantOther := netip.AddrPortFrom(otherOf(tc.want.Addr(), primary.Addr(), other.Addr()), otherOfPort(tc.want.Port(), primary.Port(), other.Port()))
		if got := addrOf(t, resp, &stun.OtherAddress{}); got != wantOther {
			t.Errorf("%+v: OTHER-ADDRESS %s, want %s", tc.cr, got, wantOther)
		}
	}
}

func otherOf(x, a, b netip.Addr) netip.Addr {
	if x == a {
		return b
	}
	return a
}

func otherOfPort(x, a, b uint16) uint16 {
	if x == a {
		return b
	}
	return a
}

func TestBadRequests(t *testing.T) {
	s := start(t, Config{Listen: "127.0.0.1:0"})
	p := newProber(t, "127.0.0.1")

	// A comprehension-required attribute the server does not know.
	resp, _ := p.ask(s.Addr(), stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{0x12, 0x34, 0, 0}})
	if code := errorCode(t, resp); code != stun.CodeUnknownAttribute {
		t.Fatalf("RESPONSE-PORT: error %d, want 420", code)
	}
	// Garbage and non-requests get no answer, and the server carries on.
	p.silent(s.Addr(), []byte("definitely not STUN"))
	ind := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication))
	p.silent(s.Addr(), ind.Raw)
	if resp, _ := p.ask(s.Addr()); resp.Type != stun.BindingSuccess {
		t.Fatalf("after garbage: %v", resp.Type)
	}
}

func TestListenErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Listen: ":0", AltListen: "127.0.0.1:0"}, "specific IP"},
		{Config{Listen: "127.0.0.1:0", AltListen: ":0"}, "specific IP"},
		{Config{Listen: "127.0.0.1:0", AltListen: "[::1]:0"}, "family"},
		{Config{Listen: "127.0.0.1:notaport"}, "STUN listen address"},
		{Config{Listen: ""}, "empty"},
	} {
		_, err := Listen(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error about %q", tc.cfg, err, tc.want)
		}
	}
	// Port in use: a clear error at Listen, not later.
	s := start(t, Config{Listen: "127.0.0.1:0"})
	_, err := Listen(Config{Listen: s.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("port in use: got %v", err)
	}
}
