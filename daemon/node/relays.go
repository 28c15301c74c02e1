package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/daemon/bind"
	"github.com/wirelace/wirelace/daemon/probe"
	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/relay/client"
)

// relayDialTimeout bounds one TCP connect to a relay.
const relayDialTimeout = 10 * time.Second

// relaySet is the node's connections to every configured relay. A packet
// for a relayed peer goes through every connected relay: the receiver's
// WireGuard drops the duplicates (replay window), and losing one relay then
// loses nothing.
type relaySet struct {
	clients []*client.Client

	mu     sync.Mutex
	states map[string]client.State
}

// relayEvents is what the relay clients tell the path manager; *paths
// implements it. Each is called on a client's goroutine.
type relayEvents interface {
	// handleRelayed gets every packet any relay delivers.
	handleRelayed(src wgtypes.Key, pkt []byte)
	// relayCannotReach: a relay says dst is not connected to it.
	relayCannotReach(dst wgtypes.Key)
	// relayConnected: a relay session came up.
	relayConnected()
}

// newRelaySet creates a client per relay, which tell ev what they see.
// Their TCP connections carry mark, so that the node-IP policy rule never
// routes them into the mesh they carry (a relay may run on a node).
func newRelaySet(addrs []string, caFile string, mark int, pub, control wgtypes.Key, ev relayEvents, log *slog.Logger) (*relaySet, error) {
	rs := &relaySet{states: map[string]client.State{}}
	var tlsCfg *tls.Config
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read relay CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("relay CA %s holds no PEM certificate", caFile)
		}
		tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	dialer := &net.Dialer{
		Timeout: relayDialTimeout,
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set fwmark %#x on the relay connection: %w", mark, serr)
			}
			return nil
		},
	}
	for _, addr := range addrs {
		cfg := client.Config{
			Dial:       dialer.DialContext,
			Addr:       addr,
			PublicKey:  pub,
			ControlKey: control,
			Receive:    ev.handleRelayed,
			PeerGone:   ev.relayCannotReach,
			Logger:     log,
			OnState: func(s client.State) {
				rs.mu.Lock()
				rs.states[addr] = s
				rs.mu.Unlock()
				if s.Connected {
					log.Info("relay connected", "relay", addr)
					ev.relayConnected()
				}
			},
		}
		if tlsCfg != nil {
			c := tlsCfg.Clone()
			if host, _, err := net.SplitHostPort(addr); err == nil {
				c.ServerName = host
			}
			cfg.TLS = c
		}
		c, err := client.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("relay %s: %w", addr, err)
		}
		rs.clients = append(rs.clients, c)
	}
	return rs, nil
}

// run keeps every client connected until ctx ends.
func (rs *relaySet) run(ctx context.Context) {
	for _, c := range rs.clients {
		go c.Run(ctx)
	}
}

// SendPacket implements bind.Relay. Transport data goes through every
// connected relay; a handshake message through the first only (see
// bind.sendPeer: duplicate initiations can break a session).
func (rs *relaySet) SendPacket(dst wgtypes.Key, pkt []byte) error {
	var last error
	sent := false
	once := bind.IsHandshake([][]byte{pkt}) || probe.IsProbe(pkt)
	for _, c := range rs.clients {
		if !c.Connected() {
			continue
		}
		if err := c.Send(dst, pkt); err != nil {
			last = err
			continue
		}
		sent = true
		if once {
			break
		}
	}
	if !sent && last == nil {
		last = client.ErrNotConnected
	}
	if sent {
		return nil
	}
	return last
}

// Connected reports whether any relay is connected; it implements
// bind.Relay.
func (rs *relaySet) Connected() bool {
	for _, c := range rs.clients {
		if c.Connected() {
			return true
		}
	}
	return false
}

// status is the state of every relay for the local API.
func (rs *relaySet) status() []netconf.RelayStatus {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]netconf.RelayStatus, 0, len(rs.clients))
	for _, c := range rs.clients {
		st := netconf.RelayStatus{Addr: c.Addr(), Connected: c.Connected()}
		if s, ok := rs.states[c.Addr()]; ok && s.Err != nil && !st.Connected {
			st.Error = s.Err.Error()
		}
		out = append(out, st)
	}
	return out
}
