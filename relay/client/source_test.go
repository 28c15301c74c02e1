package client_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/relay/protocol"
)

// rawSession authenticates n on a bare connection, so a test can write any
// frame it likes as an authenticated member.
func rawSession(t *testing.T, addr string, n node) (net.Conn, *protocol.Writer) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	defer conn.SetDeadline(time.Time{})
	r, w := protocol.NewReader(conn), protocol.NewWriter(bufio.NewWriter(conn))
	typ, p, err := r.ReadFrame()
	if err != nil || typ != protocol.TypeServerHello {
		t.Fatalf("ServerHello: %v %v", typ, err)
	}
	hello, err := protocol.ParseServerHello(p)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := protocol.NewClientAuth(hello, n.wg, n.ctl, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame(protocol.TypeClientAuth, auth.Append(nil)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := r.ReadFrame(); err != nil || typ != protocol.TypeServerAuthOK {
		t.Fatalf("auth: %v %v", typ, err)
	}
	return conn, w
}

// The relay authenticates the sender of every packet, and the source key a
// receiving daemon gets from Receive is the one the relay authenticated for
// the sending session. That binding is what lets the daemon tie a relayed
// probe (CallMeMaybe) to a peer. Here a member tries to make its packets
// arrive as another member's, in every way the protocol offers, and fails.
func TestSourceKeyIsTheSendersSession(t *testing.T) {
	ms := &members{m: map[wgtypes.Key]wgtypes.Key{}}
	ln := listen(t, "127.0.0.1:0")
	serve(t, ms, ln)
	addr := ln.Addr().String()
	nAttacker, nVictim, nTarget := newNode(t), newNode(t), newNode(t)
	ms.add(nAttacker)
	ms.add(nVictim)
	ms.add(nTarget)
	victim := startClient(t, addr, nVictim, nil)
	target := startClient(t, addr, nTarget, nil)
	victim.waitConnected(t, 5*time.Second)
	target.waitConnected(t, 5*time.Second)
	conn, w := rawSession(t, addr, nAttacker)

	// A probe-shaped payload that starts with the victim's key, as if the
	// key were a source field; and one that holds a whole RecvPacket frame
	// naming the victim as its source.
	var nested bytes.Buffer
	nw := protocol.NewWriter(bufio.NewWriter(&nested))
	must(t, nw.WritePacket(protocol.TypeRecvPacket, nVictim.wg, []byte("\xfeWLP\x01call me maybe")))
	must(t, nw.Flush())
	forged := [][]byte{
		append(append([]byte(nil), nVictim.wg[:]...), "\xfeWLP\x01call me maybe"...),
		nested.Bytes(),
	}
	for _, pkt := range forged {
		must(t, w.WritePacket(protocol.TypeSendPacket, nTarget.wg, pkt))
	}
	must(t, w.Flush())
	for i := range forged {
		select {
		case r := <-target.recv:
			if r.src != nAttacker.wg {
				t.Fatalf("forged packet %d arrived from %v, want the attacker's key %v", i, r.src, nAttacker.wg)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("forged packet %d did not arrive at all", i)
		}
	}

	// A RecvPacket frame, which only the relay may send, naming the victim
	// as source: the relay closes the attacker's connection and forwards
	// nothing.
	must(t, w.WritePacket(protocol.TypeRecvPacket, nVictim.wg, []byte("\xfeWLP\x01call me maybe")))
	must(t, w.Flush())
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("relay did not close the attacker's connection: %v", err)
	}
	select {
	case r := <-target.recv:
		t.Fatalf("target received %q from %v after the forged RecvPacket", r.pkt, r.src)
	case <-time.After(300 * time.Millisecond):
	}

	// The victim's own packets still arrive as the victim's.
	exchange(t, victim, target, "genuine")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
