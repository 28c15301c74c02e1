package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/relay/internal/relaytest"
	"github.com/wirelace/wirelace/relay/protocol"
)

// fixedNode is a member whose keys are the same in every run, so that fuzz
// inputs can name it.
func fixedNode(members *fakeMembers, b byte) node {
	n := node{WG: wgtypes.Key{b, b, b}, Ctl: wgtypes.Key{b, b, b, 0xc7}}
	members.set(n.WG, n.Ctl.PublicKey())
	return n
}

// fuzzFrame is one frame's wire form, for seeds.
func fuzzFrame(typ protocol.Type, payload ...[]byte) []byte {
	p := bytes.Join(payload, nil)
	return append(binary.BigEndian.AppendUint32([]byte{byte(typ)}, uint32(len(p))), p...)
}

// FuzzServerConn feeds arbitrary bytes to a relay through its real
// listener: as a connection's first bytes (the handshake), or, with
// authenticated set, as a session after a genuine handshake. Whatever it
// gets, the relay must not crash, must end the connection once the client
// has stopped sending, and must go on relaying for a member connected
// throughout (the sink, whose key fuzz inputs can address, as can the
// fuzzer's own).
func FuzzServerConn(f *testing.F) {
	members := newFakeMembers()
	fuzzer, sink := fixedNode(members, 1), fixedNode(members, 2)
	ts := startServer(f, Config{
		Members:     members,
		Rate:        Unlimited,
		AuthTimeout: 2 * time.Second,
		IdleTimeout: 10 * time.Minute, // the sink may sit out minimisation
	})
	cs := relaytest.Connect(f, ts.addr, sink)
	echoed := make(chan []byte, 16)
	go readEchoes(cs, sink.WG, echoed)

	hello := protocol.ServerHello{Version: protocol.Version}
	nobody := wgtypes.Key{9}
	f.Add(false, fuzzFrame(protocol.TypeClientAuth, make([]byte, 200)))
	f.Add(false, fuzzFrame(protocol.TypeServerHello, hello.Append(nil)))
	f.Add(false, []byte("GET / HTTP/1.1\r\nHost: relay\r\n\r\n"))
	f.Add(true, fuzzFrame(protocol.TypeSendPacket, sink.WG[:], []byte{4, 0, 0, 0, 1, 2, 3}))
	f.Add(true, bytes.Join([][]byte{
		fuzzFrame(protocol.TypeKeepAlive),
		fuzzFrame(protocol.TypeSendPacket, fuzzer.WG[:], []byte("to self")),
		fuzzFrame(protocol.TypeSendPacket, nobody[:], []byte("to nobody")),
		fuzzFrame(protocol.TypeSendPacket, sink.WG[:], []byte("\xfeWLP\x01probe")),
	}, nil))
	f.Add(true, fuzzFrame(protocol.TypeRecvPacket, sink.WG[:], []byte("forged")))
	f.Add(true, []byte{byte(protocol.TypeSendPacket), 0xff, 0xff, 0xff, 0xff})

	var round uint64
	f.Fuzz(func(t *testing.T, authenticated bool, data []byte) {
		c := relaytest.Dial(t, ts.addr)
		if authenticated {
			if err := c.Auth(fuzzer); err != nil {
				t.Fatalf("genuine handshake: %v", err)
			}
		}
		c.Conn.Write(data) // the relay may close first: that is its right
		c.Conn.(*net.TCPConn).CloseWrite()
		c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c.Conn); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("relay kept the connection open after the client stopped sending")
		}
		c.Conn.Close()

		// The relay still relays: a packet from the sink to itself comes
		// back, after whatever the input sent the sink.
		round++
		if !echoes(t, cs, sink, echoed, binary.BigEndian.AppendUint64([]byte("marker "), round)) {
			t.Fatalf("relay stopped relaying for the sink")
		}
	})
}

// readEchoes reads the sink's connection until it closes, and passes on
// the packets the sink sent itself. It never sets a read deadline, which
// could cut a frame in half.
func readEchoes(c *rawClient, self wgtypes.Key, echoed chan<- []byte) {
	for {
		typ, p, err := c.R.ReadFrame()
		if err != nil {
			close(echoed)
			return
		}
		if typ != protocol.TypeRecvPacket {
			continue
		}
		if src, pkt, err := protocol.ParsePacket(p); err == nil && src == self {
			select {
			case echoed <- bytes.Clone(pkt):
			default: // nobody waiting for it: a stale echo
			}
		}
	}
}

// echoes sends marker from the sink to itself and reports whether it came
// back. It sends again a few times, since a queue the input filled may
// drop one.
func echoes(t *testing.T, cs *rawClient, sink node, echoed <-chan []byte, marker []byte) bool {
	const attempts, wait = 5, 2 * time.Second
	for range attempts {
		must(t, cs.Send(sink.WG, marker))
		timeout := time.After(wait)
	await:
		for {
			select {
			case pkt, ok := <-echoed:
				if !ok {
					t.Fatalf("relay closed the sink's connection")
				}
				if bytes.Equal(pkt, marker) {
					return true
				}
			case <-timeout:
				break await
			}
		}
	}
	return false
}
