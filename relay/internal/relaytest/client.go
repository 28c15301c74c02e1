package relaytest

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/relay/protocol"
)

// Client speaks the protocol frame by frame, so tests can misbehave.
type Client struct {
	t     testing.TB
	Conn  net.Conn
	R     *protocol.Reader
	W     *protocol.Writer
	Hello protocol.ServerHello
}

// Dial connects to the relay at addr and reads its ServerHello.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	return DialFrom(t, addr, "")
}

// DialFrom is Dial from the loopback address src, so that a test can play
// several hosts.
func DialFrom(t testing.TB, addr, src string) *Client {
	t.Helper()
	conn, err := DialTCP(addr, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &Client{
		t:    t,
		Conn: conn,
		R:    protocol.NewReader(bufio.NewReader(conn)),
		W:    protocol.NewWriter(bufio.NewWriter(conn)),
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, p, err := c.R.ReadFrame()
	if err != nil || typ != protocol.TypeServerHello {
		t.Fatalf("ServerHello: %v %v", typ, err)
	}
	if c.Hello, err = protocol.ParseServerHello(p); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Time{})
	return c
}

// DialTCP opens a TCP connection to addr from the loopback address src
// ("" for the system's choice).
func DialTCP(addr, src string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return d.Dial("tcp", addr)
}

// Connect dials and authenticates as n.
func Connect(t testing.TB, addr string, n Node) *Client {
	t.Helper()
	return ConnectFrom(t, addr, "", n)
}

// ConnectFrom dials from the loopback address src and authenticates as n.
func ConnectFrom(t testing.TB, addr, src string, n Node) *Client {
	t.Helper()
	c := DialFrom(t, addr, src)
	if err := c.Auth(n); err != nil {
		t.Fatalf("auth: %v", err)
	}
	return c
}

// SendAuth sends a ClientAuth and returns the server's answer: nil for
// ServerAuthOK, an error holding the reason otherwise.
func (c *Client) SendAuth(a protocol.ClientAuth) error {
	c.t.Helper()
	if err := c.W.WriteFrame(protocol.TypeClientAuth, a.Append(nil)); err != nil {
		return err
	}
	if err := c.W.Flush(); err != nil {
		return err
	}
	c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.Conn.SetReadDeadline(time.Time{})
	typ, p, err := c.R.ReadFrame()
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

// Auth authenticates as n.
func (c *Client) Auth(n Node) error {
	a, err := protocol.NewClientAuth(c.Hello, n.WG, n.Ctl, rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.SendAuth(a)
}

// Send relays pkt to dst.
func (c *Client) Send(dst wgtypes.Key, pkt []byte) error {
	if err := c.W.WritePacket(protocol.TypeSendPacket, dst, pkt); err != nil {
		return err
	}
	return c.W.Flush()
}

// KeepAlive sends a KeepAlive frame.
func (c *Client) KeepAlive() error {
	if err := c.W.WriteFrame(protocol.TypeKeepAlive, nil); err != nil {
		return err
	}
	return c.W.Flush()
}

// Recv returns the next frame other than a KeepAlive.
func (c *Client) Recv(timeout time.Duration) (protocol.Type, []byte, error) {
	c.Conn.SetReadDeadline(time.Now().Add(timeout))
	defer c.Conn.SetReadDeadline(time.Time{})
	for {
		typ, p, err := c.R.ReadFrame()
		if err != nil || typ != protocol.TypeKeepAlive {
			return typ, p, err
		}
	}
}

// RecvPacket returns the next relayed packet and its source.
func (c *Client) RecvPacket(timeout time.Duration) (wgtypes.Key, []byte) {
	c.t.Helper()
	typ, p, err := c.Recv(timeout)
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

// ExpectClosed reads until the relay closes the connection and returns the
// ServerClose reason, if it sent one.
func (c *Client) ExpectClosed(timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	c.Conn.SetReadDeadline(deadline)
	reason := ""
	for {
		typ, p, err := c.R.ReadFrame()
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
