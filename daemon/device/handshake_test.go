package device

import (
	"net"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/daemon/bind"
)

// initiations is a connected relay that counts the handshake initiations
// the device sends through it.
type initiations struct {
	mu sync.Mutex
	n  int
}

func (r *initiations) SendPacket(_ wgtypes.Key, pkt []byte) error {
	if bind.IsHandshake([][]byte{pkt}) && pkt[0] == 1 {
		r.mu.Lock()
		r.n++
		r.mu.Unlock()
	}
	return nil
}

func (r *initiations) Connected() bool { return true }

func (r *initiations) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// StartHandshake sends an initiation only if WireGuard sent none within
// its rekey timeout; RestartHandshake sends a new one at once all the same.
func TestRestartHandshake(t *testing.T) {
	if !inChild(t) {
		needRoot(t)
		runChild(t, newNetns(t), t.Name())
		return
	}
	r := &initiations{}
	b := bind.New(testLogger())
	b.SetRelay(r)
	d, err := Open(Config{Name: testName, PrivateKey: newKey(t), Logger: testLogger()}, b)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer d.Close()
	peer := newKey(t).PublicKey()
	virt := b.PeerEndpoint(peer)
	if err := b.SetRoute(peer, bind.Route{Relay: true}); err != nil {
		t.Fatal(err)
	}
	if err := d.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{{
		PublicKey: peer,
		Endpoint:  net.UDPAddrFromAddrPort(virt),
	}}}); err != nil {
		t.Fatal(err)
	}
	for i, step := range []struct {
		name string
		do   func(wgtypes.Key) error
		want int
	}{
		{"StartHandshake", d.StartHandshake, 1},
		{"StartHandshake again", d.StartHandshake, 1}, // within the rekey timeout
		{"RestartHandshake", d.RestartHandshake, 2},
		{"RestartHandshake again", d.RestartHandshake, 3},
	} {
		if err := step.do(peer); err != nil {
			t.Fatalf("step %d, %s: %v", i, step.name, err)
		}
		if got := r.count(); got != step.want {
			t.Fatalf("after %s: %d initiations sent, want %d", step.name, got, step.want)
		}
	}
	if err := d.RestartHandshake(newKey(t).PublicKey()); err == nil {
		t.Error("RestartHandshake of an unknown peer did not fail")
	}
}
