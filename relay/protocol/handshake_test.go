package protocol

import (
	"bytes"
	"crypto/rand"
	"errors"
	"math"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func genKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestHandshake(t *testing.T) {
	hello, eph, err := NewServerHello(rand.Reader)
	must(t, err)
	hello2, err := ParseServerHello(hello.Append(nil))
	must(t, err)
	if hello2 != hello {
		t.Fatalf("ServerHello did not round-trip")
	}

	wg := genKey(t).PublicKey()
	ctl := genKey(t)
	auth, err := NewClientAuth(hello2, wg, ctl, rand.Reader)
	must(t, err)
	auth2, err := ParseClientAuth(auth.Append(nil))
	must(t, err)
	if auth2.WireGuardKey != wg || auth2.ControlKey != ctl.PublicKey() {
		t.Fatalf("ClientAuth did not round-trip")
	}
	must(t, auth2.Verify(hello, eph, ctl.PublicKey()))

	t.Run("wrong control key", func(t *testing.T) {
		if err := auth2.Verify(hello, eph, genKey(t).PublicKey()); !errors.Is(err, ErrBadProof) {
			t.Fatalf("got %v, want ErrBadProof", err)
		}
	})
	t.Run("tampered proof", func(t *testing.T) {
		bad := auth2
		bad.Proof = append([]byte(nil), auth2.Proof...)
		bad.Proof[len(bad.Proof)/2] ^= 1
		if err := bad.Verify(hello, eph, ctl.PublicKey()); !errors.Is(err, ErrBadProof) {
			t.Fatalf("got %v, want ErrBadProof", err)
		}
	})
	t.Run("claimed key swapped", func(t *testing.T) {
		// An eavesdropper rewrites the WireGuard key in a valid ClientAuth.
		bad := auth2
		bad.WireGuardKey = genKey(t).PublicKey()
		if err := bad.Verify(hello, eph, ctl.PublicKey()); !errors.Is(err, ErrBadProof) {
			t.Fatalf("got %v, want ErrBadProof", err)
		}
	})
	t.Run("replay on another session", func(t *testing.T) {
		other, eph2, err := NewServerHello(rand.Reader)
		must(t, err)
		if err := auth2.Verify(other, eph2, ctl.PublicKey()); !errors.Is(err, ErrBadProof) {
			t.Fatalf("got %v, want ErrBadProof", err)
		}
	})
	t.Run("low-order control key", func(t *testing.T) {
		if err := auth2.Verify(hello, eph, wgtypes.Key{}); !errors.Is(err, ErrBadProof) {
			t.Fatalf("got %v, want ErrBadProof", err)
		}
	})
}

func TestHandshakeParseErrors(t *testing.T) {
	hello, _, err := NewServerHello(rand.Reader)
	must(t, err)
	p := hello.Append(nil)
	if _, err := ParseServerHello([]byte("HTTP/1.1 400 Bad Request")); !errors.Is(err, ErrBadMagic) {
		t.Errorf("bad magic: %v", err)
	}
	p[len(Magic)] = Version + 1
	if _, err := ParseServerHello(p); !errors.Is(err, ErrBadVersion) {
		t.Errorf("bad version: %v", err)
	}
	if _, err := ParseServerHello(hello.Append(nil)[:serverHelloLen-1]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short hello: %v", err)
	}
	if _, err := ParseClientAuth([]byte{Version, 1, 2}); !errors.Is(err, ErrMalformed) {
		t.Errorf("short auth: %v", err)
	}
	if _, err := ParseClientAuth([]byte{Version + 1}); !errors.Is(err, ErrBadVersion) {
		t.Errorf("auth version: %v", err)
	}
	if clientAuthLen > MaxHandshakePayloadLen || serverHelloLen > MaxHandshakePayloadLen {
		t.Errorf("handshake frames exceed MaxHandshakePayloadLen")
	}
}

// fuzzHandshake is a fixed ServerHello and a ClientAuth that answers it, so
// the fuzz corpus holds valid messages that stay valid across runs.
func fuzzHandshake() (ServerHello, *[KeyLen]byte, []byte) {
	seeded := mrand.NewChaCha8([32]byte{'w', 'i', 'r', 'e', 'l', 'a', 'c', 'e'})
	hello, eph, err := NewServerHello(seeded)
	if err != nil {
		panic(err)
	}
	var wg, ctl wgtypes.Key
	seeded.Read(wg[:])
	seeded.Read(ctl[:])
	auth, err := NewClientAuth(hello, wg, ctl, seeded)
	if err != nil {
		panic(err)
	}
	return hello, eph, auth.Append(nil)
}

// FuzzHandshake feeds arbitrary payloads to every handshake parser. What
// parses must encode back to the same bytes (one message, one encoding), a
// parsed ClientAuth must verify only if it is the genuine one, and a reason
// must come out printable and bounded, whatever went in.
func FuzzHandshake(f *testing.F) {
	hello, eph, genuine := fuzzHandshake()
	f.Add(hello.Append(nil))
	f.Add(genuine)
	f.Add(AppendAuthOK(nil, 30*time.Second))
	f.Add(AppendReason(nil, "relay is full (5000 sessions)"))
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		if h, err := ParseServerHello(p); err == nil && !bytes.Equal(h.Append(nil), p) {
			t.Fatalf("ServerHello %x re-encodes as %x", p, h.Append(nil))
		}
		if a, err := ParseClientAuth(p); err == nil {
			if !bytes.Equal(a.Append(nil), p) {
				t.Fatalf("ClientAuth %x re-encodes as %x", p, a.Append(nil))
			}
			if a.Verify(hello, eph, a.ControlKey) == nil && !bytes.Equal(p, genuine) {
				t.Fatalf("a ClientAuth that is not the genuine one verifies: %x", p)
			}
		}
		if d, err := ParseAuthOK(p); err == nil && (d < 0 || d > math.MaxUint32*time.Millisecond) {
			t.Fatalf("ServerAuthOK %x gives idle timeout %v", p, d)
		}
		reason := ParseReason(p)
		if len(reason) > MaxReasonLen || !utf8.ValidString(reason) || strings.ContainsFunc(reason, unicode.IsControl) {
			t.Fatalf("reason %q from %x is not printable and bounded", reason, p)
		}
		if k, err := ParseKey(p); err == nil && !bytes.Equal(k[:], p) {
			t.Fatalf("key %x parsed as %x", p, k)
		}
	})
}
