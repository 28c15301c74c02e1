package protocol

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func newPipe() (*Reader, *Writer, *bytes.Buffer) {
	var buf bytes.Buffer
	return NewReader(bufio.NewReader(&buf)), NewWriter(bufio.NewWriter(&buf)), &buf
}

func TestFrameRoundTrip(t *testing.T) {
	r, w, _ := newPipe()
	key := wgtypes.Key{1, 2, 3}
	big := bytes.Repeat([]byte{0xab}, MaxPacketLen)
	must(t, w.WritePacket(TypeSendPacket, key, []byte("hello")))
	must(t, w.WriteFrame(TypeKeepAlive, nil))
	must(t, w.WritePacket(TypeRecvPacket, key, big))
	must(t, w.Flush())

	typ, p, err := r.ReadFrame()
	must(t, err)
	k, pkt, err := ParsePacket(p)
	must(t, err)
	if typ != TypeSendPacket || k != key || string(pkt) != "hello" {
		t.Fatalf("got %v %v %q", typ, k, pkt)
	}
	typ, p, err = r.ReadFrame()
	must(t, err)
	if typ != TypeKeepAlive || len(p) != 0 {
		t.Fatalf("got %v with %d bytes", typ, len(p))
	}
	typ, p, err = r.ReadFrame()
	must(t, err)
	_, pkt, err = ParsePacket(p)
	must(t, err)
	if typ != TypeRecvPacket || !bytes.Equal(pkt, big) {
		t.Fatalf("maximum packet did not round-trip")
	}
	if _, _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("end of stream: got %v, want io.EOF", err)
	}
}

func TestOversizedFrame(t *testing.T) {
	var hdr [HeaderLen]byte
	hdr[0] = byte(TypeSendPacket)
	binary.BigEndian.PutUint32(hdr[1:], MaxPayloadLen+1)
	r := NewReader(bufio.NewReader(bytes.NewReader(hdr[:])))
	if _, _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}

	// The handshake limit is lower.
	binary.BigEndian.PutUint32(hdr[1:], MaxHandshakePayloadLen+1)
	r = NewReader(bufio.NewReader(bytes.NewReader(hdr[:])))
	r.SetMaxPayload(MaxHandshakePayloadLen)
	if _, _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("handshake limit: got %v, want ErrFrameTooLarge", err)
	}

	_, w, _ := newPipe()
	if err := w.WritePacket(TypeSendPacket, wgtypes.Key{}, make([]byte, MaxPacketLen+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("writer: got %v, want ErrFrameTooLarge", err)
	}
}

func TestTruncatedFrame(t *testing.T) {
	for name, data := range map[string][]byte{
		"header":  {byte(TypeSendPacket), 0, 0},
		"payload": {byte(TypeSendPacket), 0, 0, 0, 100, 1, 2, 3},
	} {
		t.Run(name, func(t *testing.T) {
			r := NewReader(bufio.NewReader(bytes.NewReader(data)))
			if _, _, err := r.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	if _, _, err := ParsePacket(make([]byte, KeyLen)); !errors.Is(err, ErrMalformed) {
		t.Errorf("packet without datagram: %v", err)
	}
	if _, err := ParseKey(make([]byte, KeyLen+1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("long key: %v", err)
	}
	if _, err := ParseAuthOK([]byte{1}); !errors.Is(err, ErrMalformed) {
		t.Errorf("short auth ok: %v", err)
	}
	d, err := ParseAuthOK(AppendAuthOK(nil, 30*time.Second))
	if err != nil || d != 30*time.Second {
		t.Errorf("auth ok round trip: %v %v", d, err)
	}
}

func TestReason(t *testing.T) {
	long := strings.Repeat("é", MaxReasonLen) // 2 bytes each
	p := AppendReason(nil, long)
	if len(p) > MaxReasonLen {
		t.Fatalf("reason not cut: %d bytes", len(p))
	}
	if got := ParseReason(p); strings.ContainsRune(got, '?') {
		t.Fatalf("cut inside a rune: %q", got)
	}
	for in, want := range map[string]string{
		"bad\x1b[31m\xff":            "bad?[31m?",
		"c1 \u009b31m csi":           "c1 ?31m csi",
		"bidi \u202eevil\u202c":      "bidi ?evil?",
		"relay is full (5 sessions)": "relay is full (5 sessions)",
	} {
		if got := ParseReason([]byte(in)); got != want {
			t.Errorf("ParseReason(%q) = %q, want %q", in, got, want)
		}
	}
}

// The hot path must not allocate: a relay moves hundreds of thousands of
// frames a second.
func TestNoAllocsPerFrame(t *testing.T) {
	var buf bytes.Buffer
	buf.Grow(1 << 20)
	w := NewWriter(bufio.NewWriterSize(&buf, 64<<10))
	r := NewReader(bufio.NewReaderSize(&buf, 64<<10))
	key := wgtypes.Key{9}
	pkt := make([]byte, 1400)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := w.WritePacket(TypeSendPacket, key, pkt); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
		buf.Reset()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame, want 0", allocs)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{byte(TypeKeepAlive), 0, 0, 0, 0})
	f.Add([]byte{byte(TypeSendPacket), 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{byte(TypeSendPacket), 0, 0, 0, 40, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bufio.NewReader(bytes.NewReader(data)))
		for range 16 {
			typ, p, err := r.ReadFrame()
			if err != nil {
				return
			}
			if len(p) > MaxPayloadLen {
				t.Fatalf("payload of %d bytes passed the limit", len(p))
			}
			switch typ {
			case TypeSendPacket, TypeRecvPacket:
				ParsePacket(p)
			case TypeClientAuth:
				ParseClientAuth(p)
			case TypeServerHello:
				ParseServerHello(p)
			}
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A read loop looks at the clock only when the next read may block, and
// at least every deadlineCheckEvery frames.
func TestDeadlineCheckDue(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(bufio.NewWriter(&buf))
	const keepAlives = 2*deadlineCheckEvery + 10
	for range keepAlives {
		must(t, w.WriteFrame(TypeKeepAlive, nil))
	}
	must(t, w.WritePacket(TypeSendPacket, wgtypes.Key{}, []byte("partly buffered")))
	must(t, w.Flush())
	stream := buf.Bytes()
	// The last frame's final bytes arrive only after a further read.
	cut := len(stream) - 3
	r := NewReader(bufio.NewReaderSize(io.MultiReader(bytes.NewReader(stream[:cut]), bytes.NewReader(stream[cut:])), 64<<10))

	if !r.DeadlineCheckDue() {
		t.Fatal("no check before the first read (nothing buffered)")
	}
	var checks []int
	for i := 1; i <= keepAlives; i++ {
		if _, _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
		if r.DeadlineCheckDue() {
			checks = append(checks, i)
		}
	}
	// After frames 64 and 128 (the bound), and before the partly buffered
	// frame, whose read will block.
	want := []int{deadlineCheckEvery, 2 * deadlineCheckEvery, keepAlives}
	if fmt.Sprint(checks) != fmt.Sprint(want) {
		t.Fatalf("clock checks after frames %v, want %v", checks, want)
	}
}
