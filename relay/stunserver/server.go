// Package stunserver answers STUN Binding requests (RFC 5389) so that nodes
// learn their server-reflexive address, and, given an alternate address,
// supports the NAT behaviour discovery of RFC 5780: OTHER-ADDRESS,
// RESPONSE-ORIGIN and CHANGE-REQUEST.
//
// RFC 5780 needs the server to answer from another IP, another port, or
// both. With an alternate address that differs from the primary in IP and
// port (A:P and B:Q), the server also listens on A:Q and B:P, so each of the
// three changes is answered from exactly the address asked for. With an
// alternate that differs in the port only (one IP, as on many cloud hosts),
// "change port" works and "change IP" is refused with 420, as RFC 5780
// prescribes for a change the server cannot make; a client then knows the
// filtering test is unavailable instead of being misled by an answer from
// the wrong address.
package stunserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wirelace/wirelace/internal/netipx"
)

// maxDatagram is the largest request read. Binding requests are a few dozen
// bytes; anything that does not fit is not one.
const maxDatagram = 1500

// Config configures a Server.
type Config struct {
	// Listen is the primary UDP address, host:port (":3478" for all).
	Listen string
	// AltListen, optional, is the alternate address for RFC 5780. It and
	// Listen must then both have specific IP addresses, since OTHER-ADDRESS
	// and RESPONSE-ORIGIN must be addresses clients can reach.
	AltListen string
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the server's metrics; nil leaves them unregistered.
	Registry prometheus.Registerer
}

// socket is one of the server's UDP sockets.
type socket struct {
	conn *net.UDPConn
	addr netip.AddrPort // as bound: the IP may be unspecified
}

// Server is a STUN server on one to four UDP sockets.
type Server struct {
	log     *slog.Logger
	metrics *metrics
	primary *socket
	// sockets is keyed by bound address. With an alternate configured,
	// every key has a specific IP.
	sockets map[netip.AddrPort]*socket
	// ips and ports are the server's distinct IPs and ports, one or two
	// of each; "the other" IP or port is the one that is not yours.
	ips     []netip.Addr
	ports   []uint16
	rfc5780 bool

	closeOnce sync.Once
}

// Listen opens the server's sockets, so that a port in use fails here, at
// start-up, rather than in Serve.
func Listen(cfg Config) (_ *Server, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{log: cfg.Logger, metrics: m, sockets: make(map[netip.AddrPort]*socket)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	primary, err := resolve(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("STUN listen address %q: %w", cfg.Listen, err)
	}
	if s.primary, err = s.open(primary); err != nil {
		return nil, err
	}
	if cfg.AltListen == "" {
		s.ips = []netip.Addr{s.primary.addr.Addr()}
		s.ports = []uint16{s.primary.addr.Port()}
		return s, nil
	}

	alt, err := resolve(cfg.AltListen)
	if err != nil {
		return nil, fmt.Errorf("STUN alternate address %q: %w", cfg.AltListen, err)
	}
	pa := s.primary.addr
	switch {
	case !specific(pa.Addr()) || !specific(alt.Addr()):
		return nil, fmt.Errorf("STUN alternate address needs specific IP addresses in both the primary (%s) and the alternate (%s): OTHER-ADDRESS must be reachable by clients", cfg.Listen, cfg.AltListen)
	case pa.Addr().Is4() != alt.Addr().Is4():
		return nil, fmt.Errorf("STUN primary %s and alternate %s must be of the same address family", pa, alt)
	case pa.Addr() == alt.Addr() && pa.Port() == alt.Port():
		return nil, fmt.Errorf("STUN alternate address %s is the primary address", alt)
	}
	a, err := s.open(alt)
	if err != nil {
		return nil, err
	}
	alt = a.addr // its port, if it was 0
	s.rfc5780 = true
	s.ips = uniq(pa.Addr(), alt.Addr())
	s.ports = uniq(pa.Port(), alt.Port())
	for _, ip := range s.ips {
		for _, port := range s.ports {
			if _, ok := s.sockets[netip.AddrPortFrom(ip, port)]; ok {
				continue
			}
			if _, err := s.open(netip.AddrPortFrom(ip, port)); err != nil {
				return nil, fmt.Errorf("RFC 5780 needs every pairing of the primary and alternate IPs and ports: %w", err)
			}
		}
	}
	return s, nil
}

// resolve parses host:port, resolving a host name once at start-up.
func resolve(addr string) (netip.AddrPort, error) {
	if addr == "" {
		return netip.AddrPort{}, errors.New("empty address")
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ap := ua.AddrPort()
	return netipx.UnmapAddrPort(ap), nil
}

func (s *Server) open(addr netip.AddrPort) (*socket, error) {
	// An empty host listens on both families; an address, on its own.
	network := "udp"
	switch {
	case addr.Addr().Is4():
		network = "udp4"
	case addr.Addr().Is6():
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		// "listen udp4 1.2.3.4:3478: bind: address already in use" says
		// the address twice; keep the errno, which errors.Is still finds.
		var se *os.SyscallError
		if errors.As(err, &se) {
			err = se.Err
		}
		return nil, fmt.Errorf("STUN listen on %s: %w", addr, err)
	}
	bound := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if !addr.Addr().IsValid() {
		// ":3478": keep the address unspecified rather than whatever form
		// the kernel reports for a dual-stack wildcard.
		bound = netip.AddrPortFrom(netip.IPv6Unspecified(), bound.Port())
	}
	sock := &socket{conn: conn, addr: netipx.UnmapAddrPort(bound)}
	s.sockets[sock.addr] = sock
	return sock, nil
}

func specific(a netip.Addr) bool { return a.IsValid() && !a.IsUnspecified() }

func uniq[T comparable](a, b T) []T {
	if a == b {
		return []T{a}
	}
	return []T{a, b}
}

// Addr is the primary address as bound.
func (s *Server) Addr() netip.AddrPort { return s.primary.addr }

// Addrs lists every address the server listens on.
func (s *Server) Addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(s.sockets))
	for a := range s.sockets {
		out = append(out, a)
	}
	return out
}

// OtherAddr is the OTHER-ADDRESS the primary socket announces: the alternate
// address, if one is configured.
func (s *Server) OtherAddr() (netip.AddrPort, bool) {
	if !s.rfc5780 {
		return netip.AddrPort{}, false
	}
	return s.other(s.primary.addr), true
}

// Serve answers requests until ctx ends, then closes the sockets.
func (s *Server) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(s.sockets))
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	for _, sock := range s.sockets {
		s.log.Info("STUN listening", "addr", sock.addr.String(), "rfc5780", s.rfc5780)
		wg.Go(func() {
			if err := s.serveSocket(sock); err != nil && ctx.Err() == nil {
				errs <- err
				s.Close() // one socket failing takes the server down, visibly
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// Close closes every socket; Serve then returns.
func (s *Server) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		for _, sock := range s.sockets {
			if err := sock.conn.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

func (s *Server) serveSocket(sock *socket) error {
	h := newHandler(s, sock)
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := sock.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("STUN read on %s: %w", sock.addr, err)
		}
		h.handle(buf[:n], from)
	}
}

// otherIP and otherPort return the server's other IP or port than the given
// one, if it has two.
func (s *Server) otherIP(ip netip.Addr) (netip.Addr, bool) {
	for _, o := range s.ips {
		if o != ip {
			return o, true
		}
	}
	return ip, false
}

func (s *Server) otherPort(p uint16) (uint16, bool) {
	for _, o := range s.ports {
		if o != p {
			return o, true
		}
	}
	return p, false
}

// other is the OTHER-ADDRESS for a request received on a: the address that
// differs from it in IP and port, as far as the server has them.
func (s *Server) other(a netip.AddrPort) netip.AddrPort {
	ip, _ := s.otherIP(a.Addr())
	port, _ := s.otherPort(a.Port())
	return netip.AddrPortFrom(ip, port)
}
