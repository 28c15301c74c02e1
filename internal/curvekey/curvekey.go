// Package curvekey checks Curve25519 public keys received from others (the
// control keys of MeshNodes and of probe senders) before NaCl boxes are
// opened or sealed with them: one definition of a usable key for the probes
// and the relay handshake.
package curvekey

import (
	"fmt"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/salsa20/salsa"
)

// LowOrder reports whether pub is one of the small-order points of
// Curve25519, for which X25519 gives the all-zero output whatever the
// private key: a box "shared" with such a key is a box everyone can open or
// forge. curve25519.X25519 refuses exactly those, so it is the test.
func LowOrder(pub [32]byte) bool {
	var scalar [32]byte
	scalar[0] = 1 // any scalar works; the check is on the point
	_, err := curve25519.X25519(scalar[:], pub[:])
	return err != nil
}

// Precompute is nacl/box.Precompute, except that it refuses a low-order
// public key (box.Precompute silently returns the key everyone knows).
func Precompute(priv, pub [32]byte) (*[32]byte, error) {
	s, err := curve25519.X25519(priv[:], pub[:])
	if err != nil {
		return nil, fmt.Errorf("key agreement: %w", err)
	}
	var shared, key [32]byte
	copy(shared[:], s)
	var zeros [16]byte
	salsa.HSalsa20(&key, &zeros, &shared, &salsa.Sigma)
	return &key, nil
}
