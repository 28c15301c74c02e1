package bind

import (
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestIsHandshake(t *testing.T) {
	cases := []struct {
		bufs [][]byte
		want bool
	}{
		{[][]byte{msg(1, 148)}, true},
		{[][]byte{msg(2, 92)}, true},
		{[][]byte{msg(3, 64)}, true},
		{[][]byte{msg(4, 32)}, false},
		{[][]byte{msg(1, 148), msg(1, 148)}, false}, // batches are transport data
		{[][]byte{{1, 0}}, false},
	}
	for i, c := range cases {
		if got := IsHandshake(c.bufs); got != c.want {
			t.Errorf("case %d: IsHandshake = %v, want %v", i, got, c.want)
		}
	}
}

type countingRelay struct{ n int }

func (r *countingRelay) SendPacket(wgtypes.Key, []byte) error { r.n++; return nil }

// A handshake on a route with both paths goes through the relay only;
// transport data goes both ways.
func TestHandshakeTakesOnePath(t *testing.T) {
	b := New(nil)
	r := &countingRelay{}
	b.SetRelay(r)
	k, _ := wgtypes.GeneratePrivateKey()
	key := k.PublicKey()
	virt := b.PeerEndpoint(key)
	if !IsVirtual(virt) {
		t.Fatalf("%s is not virtual", virt)
	}
	ep, err := b.ParseEndpoint(virt.String())
	if err != nil {
		t.Fatal(err)
	}
	// The direct address is never reached (the bind is closed), which is
	// what tells the test whether a direct send was attempted: it errors.
	if err := b.SetRoute(key, Route{Direct: netip.MustParseAddrPort("127.0.0.1:9"), Relay: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.Send([][]byte{msg(1, 148)}, ep); err != nil {
		t.Fatalf("handshake went direct too: %v", err)
	}
	if r.n != 1 {
		t.Fatalf("handshake relayed %d times, want 1", r.n)
	}
	if err := b.Send([][]byte{msg(4, 64)}, ep); err == nil {
		t.Fatal("transport data was not sent directly as well")
	}
	if r.n != 2 {
		t.Fatalf("transport data not relayed")
	}
}
