package protocol

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/nacl/box"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/curvekey"
)

// The handshake proves to the relay that the client holds the control
// private key of the MeshNode it claims, and binds the session to that
// MeshNode's WireGuard key. The relay proves nothing about itself: it only
// forwards WireGuard ciphertext, which peers authenticate end to end.
// Operators who want the relay authenticated too run it behind TLS.
//
//  1. The server makes a fresh curve25519 key pair (E, e) and a random
//     32-byte challenge C for this connection, and sends ServerHello{E, C}.
//  2. The client, holding control key pair (K, k) and known to the mesh by
//     WireGuard public key W, seals
//     P = authLabel || C || E || W || K
//     in a NaCl box from k to E under a random nonce N, and sends
//     ClientAuth{W, K, N, box}.
//  3. The server looks W up in the MeshNodes, requires the MeshNode's
//     control key to equal K, and opens the box with (K, e). It succeeds
//     only if the box was made with k: box is authenticated encryption under
//     the shared key X25519(k, E) = X25519(e, K), which only the holders of
//     k or e can compute, and e never leaves the server.
//
// Replay: E is new on every connection, so a box recorded on one connection
// does not open on another; C and E inside P are checked as well, so that the
// proof also holds if a later version reuses server keys. Binding: W and K
// are inside the authenticated plaintext, so nobody can move a proof to a
// different WireGuard key. The label separates this use of the control key
// from its other use (path probes between nodes).
//
// What this does not stop: an active man in the middle without TLS can relay
// a whole handshake and then hold a session in the client's name. Through it
// he can drop or read the client's relayed traffic, which he could do on the
// path anyway; WireGuard ciphertext stays opaque and unforgeable to him.

// Handshake constants. The magic lets a client that dialled the wrong port
// fail with a clear error rather than an obscure parse failure.
const (
	Magic        = "WIRELACE"
	Version      = 1
	ChallengeLen = 32
	NonceLen     = 24
	authLabel    = "wirelace relay auth v1\x00"
)

const (
	serverHelloLen = len(Magic) + 1 + KeyLen + ChallengeLen
	proofPlainLen  = len(authLabel) + ChallengeLen + 3*KeyLen
	proofLen       = proofPlainLen + box.Overhead
	clientAuthLen  = 1 + 2*KeyLen + NonceLen + proofLen
)

// Handshake errors; the server maps them to auth failure reasons.
var (
	ErrBadMagic   = errors.New("peer is not a wirelace relay (bad magic)")
	ErrBadVersion = errors.New("unsupported relay protocol version")
	ErrBadProof   = errors.New("proof of the control key does not verify")
)

// ServerHello opens a session.
type ServerHello struct {
	Version      uint8
	EphemeralKey wgtypes.Key // E, public
	Challenge    [ChallengeLen]byte
}

// NewServerHello makes a fresh ephemeral key pair and challenge from rand and
// returns the hello with the ephemeral private key, which the server keeps
// for Verify and discards after the handshake.
func NewServerHello(rand io.Reader) (ServerHello, *[KeyLen]byte, error) {
	pub, priv, err := box.GenerateKey(rand)
	if err != nil {
		return ServerHello{}, nil, fmt.Errorf("generate ephemeral key: %w", err)
	}
	h := ServerHello{Version: Version, EphemeralKey: *pub}
	if _, err := io.ReadFull(rand, h.Challenge[:]); err != nil {
		return ServerHello{}, nil, fmt.Errorf("generate challenge: %w", err)
	}
	return h, priv, nil
}

// Append appends the wire form of h to b.
func (h ServerHello) Append(b []byte) []byte {
	b = append(b, Magic...)
	b = append(b, h.Version)
	b = append(b, h.EphemeralKey[:]...)
	return append(b, h.Challenge[:]...)
}

// ParseServerHello decodes a ServerHello payload.
func ParseServerHello(p []byte) (ServerHello, error) {
	if len(p) < len(Magic) || string(p[:len(Magic)]) != Magic {
		return ServerHello{}, ErrBadMagic
	}
	if len(p) < len(Magic)+1 {
		return ServerHello{}, fmt.Errorf("ServerHello of %d bytes: %w", len(p), ErrMalformed)
	}
	if v := p[len(Magic)]; v != Version {
		return ServerHello{}, fmt.Errorf("relay speaks version %d, this client %d: %w", v, Version, ErrBadVersion)
	}
	if len(p) != serverHelloLen {
		return ServerHello{}, fmt.Errorf("ServerHello of %d bytes: %w", len(p), ErrMalformed)
	}
	var h ServerHello
	h.Version = p[len(Magic)]
	p = p[len(Magic)+1:]
	copy(h.EphemeralKey[:], p[:KeyLen])
	copy(h.Challenge[:], p[KeyLen:])
	return h, nil
}

// ClientAuth answers a ServerHello.
type ClientAuth struct {
	Version      uint8
	WireGuardKey wgtypes.Key // W, the key the session is bound to
	ControlKey   wgtypes.Key // K, the control public key
	Nonce        [NonceLen]byte
	Proof        []byte // box(P) from k to E
}

// NewClientAuth answers hello for the node known by WireGuard public key
// wgPub, proving possession of controlPriv. rand supplies the box nonce.
func NewClientAuth(hello ServerHello, wgPub, controlPriv wgtypes.Key, rand io.Reader) (ClientAuth, error) {
	a := ClientAuth{
		Version:      Version,
		WireGuardKey: wgPub,
		ControlKey:   controlPriv.PublicKey(),
	}
	if _, err := io.ReadFull(rand, a.Nonce[:]); err != nil {
		return ClientAuth{}, fmt.Errorf("generate nonce: %w", err)
	}
	plain := proofPlaintext(hello, a.WireGuardKey, a.ControlKey)
	eph := [KeyLen]byte(hello.EphemeralKey)
	priv := [KeyLen]byte(controlPriv)
	a.Proof = box.Seal(nil, plain, &a.Nonce, &eph, &priv)
	return a, nil
}

// Append appends the wire form of a to b.
func (a ClientAuth) Append(b []byte) []byte {
	b = append(b, a.Version)
	b = append(b, a.WireGuardKey[:]...)
	b = append(b, a.ControlKey[:]...)
	b = append(b, a.Nonce[:]...)
	return append(b, a.Proof...)
}

// ParseClientAuth decodes a ClientAuth payload. The proof aliases p.
func ParseClientAuth(p []byte) (ClientAuth, error) {
	if len(p) < 1 {
		return ClientAuth{}, fmt.Errorf("empty ClientAuth: %w", ErrMalformed)
	}
	if p[0] != Version {
		return ClientAuth{}, fmt.Errorf("client speaks version %d, this relay %d: %w", p[0], Version, ErrBadVersion)
	}
	if len(p) != clientAuthLen {
		return ClientAuth{}, fmt.Errorf("ClientAuth of %d bytes: %w", len(p), ErrMalformed)
	}
	a := ClientAuth{Version: p[0]}
	p = p[1:]
	copy(a.WireGuardKey[:], p[:KeyLen])
	copy(a.ControlKey[:], p[KeyLen:2*KeyLen])
	copy(a.Nonce[:], p[2*KeyLen:2*KeyLen+NonceLen])
	a.Proof = p[2*KeyLen+NonceLen:]
	return a, nil
}

// Verify checks that a answers hello, whose ephemeral private key is ephPriv,
// and was sealed with the private half of controlKey. The caller passes the
// control key it trusts (from the MeshNode), never the one a claims.
func (a ClientAuth) Verify(hello ServerHello, ephPriv *[KeyLen]byte, controlKey wgtypes.Key) error {
	if curvekey.LowOrder(controlKey) {
		// A low-order point makes the shared secret predictable, which
		// would let anyone forge a box for it.
		return fmt.Errorf("control key is a low-order point: %w", ErrBadProof)
	}
	ctl := [KeyLen]byte(controlKey)
	plain, ok := box.Open(nil, a.Proof, &a.Nonce, &ctl, ephPriv)
	if !ok {
		return ErrBadProof
	}
	want := proofPlaintext(hello, a.WireGuardKey, controlKey)
	if subtle.ConstantTimeCompare(plain, want) != 1 {
		return fmt.Errorf("proof is for another session or key: %w", ErrBadProof)
	}
	return nil
}

func proofPlaintext(hello ServerHello, wgPub, controlPub wgtypes.Key) []byte {
	p := make([]byte, 0, proofPlainLen)
	p = append(p, authLabel...)
	p = append(p, hello.Challenge[:]...)
	p = append(p, hello.EphemeralKey[:]...)
	p = append(p, wgPub[:]...)
	return append(p, controlPub[:]...)
}
