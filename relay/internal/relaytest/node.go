package relaytest

import (
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Node is a mesh node's keys: the WireGuard public key it is known by and
// its control private key.
type Node struct {
	WG  wgtypes.Key
	Ctl wgtypes.Key
}

// NewKey returns a fresh private key.
func NewKey(t testing.TB) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// NewNode returns a node with fresh keys.
func NewNode(t testing.TB) Node {
	t.Helper()
	return Node{WG: NewKey(t).PublicKey(), Ctl: NewKey(t)}
}
