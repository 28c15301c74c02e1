package protocol

import (
	"crypto/rand"
	"errors"
	"testing"

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
