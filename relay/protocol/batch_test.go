package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// checkBatchRoundTrip writes the same frames through a BatchWriter on w, in two
// batches, and checks what Reader parses back from rd.
func checkBatchRoundTrip(t *testing.T, w io.Writer, rd io.Reader) {
	t.Helper()
	bw := NewBatchWriter(w, 4096)
	key := wgtypes.Key{7, 7}
	big := bytes.Repeat([]byte{0xcd}, MaxPacketLen)
	pkts := [][]byte{[]byte("a"), big, []byte("bc")}
	for _, p := range pkts {
		must(t, bw.AddPacket(TypeRecvPacket, key, p))
	}
	must(t, bw.AddFrame(TypeKeepAlive, nil))
	must(t, bw.Flush())
	bw.Idle() // a quiet spell: the next batch must not miss its memory
	must(t, bw.AddFrame(TypePeerGone, key[:]))
	must(t, bw.Flush())
	must(t, bw.Flush()) // an empty batch writes nothing

	r := NewReader(bufio.NewReader(rd))
	for i, want := range pkts {
		typ, p, err := r.ReadFrame()
		must(t, err)
		k, pkt, err := ParsePacket(p)
		must(t, err)
		if typ != TypeRecvPacket || k != key || !bytes.Equal(pkt, want) {
			t.Fatalf("frame %d: %v from %v, %d bytes", i, typ, k, len(pkt))
		}
	}
	if typ, p, err := r.ReadFrame(); err != nil || typ != TypeKeepAlive || len(p) != 0 {
		t.Fatalf("got %v (%d bytes) %v, want KeepAlive", typ, len(p), err)
	}
	if typ, p, err := r.ReadFrame(); err != nil || typ != TypePeerGone || !bytes.Equal(p, key[:]) {
		t.Fatalf("got %v %v, want PeerGone", typ, err)
	}
}

// Through a buffer: the copying path, used for TLS.
func TestBatchWriterBuffered(t *testing.T) {
	var buf bytes.Buffer
	checkBatchRoundTrip(t, &buf, &buf)
}

// Over TCP: the vectored path (writev).
func TestBatchWriterVectored(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	must(t, err)
	defer c.Close()
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	defer s.Close()
	if bw := NewBatchWriter(c, 0); !bw.vectored {
		t.Fatal("a TCP connection did not get vectored writes")
	}
	// Loopback socket buffers hold the whole batch, so writing it all
	// before reading any does not block.
	checkBatchRoundTrip(t, c, s)
}

// Frames refused for their size, and a batch discarded by Reset, are not
// written: only the KeepAlive added after them is.
func TestBatchWriterLimitsAndReset(t *testing.T) {
	var buf bytes.Buffer
	bw := NewBatchWriter(&buf, 64)
	if err := bw.AddPacket(TypeRecvPacket, wgtypes.Key{}, make([]byte, MaxPacketLen+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized packet: %v", err)
	}
	if err := bw.AddFrame(TypeKeepAlive, make([]byte, MaxPayloadLen+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	must(t, bw.AddPacket(TypeRecvPacket, wgtypes.Key{1}, []byte("discarded")))
	bw.Reset()
	must(t, bw.AddFrame(TypeKeepAlive, nil))
	must(t, bw.Flush())
	r := NewReader(&buf)
	if typ, p, err := r.ReadFrame(); err != nil || typ != TypeKeepAlive || len(p) != 0 {
		t.Fatalf("got %v (%d bytes) %v, want only the KeepAlive", typ, len(p), err)
	}
	if typ, _, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v %v after the KeepAlive, want the end: refused or reset frames were written", typ, err)
	}
}
