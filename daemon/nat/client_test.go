package nat

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// recorder is a Sender that remembers what was sent and answers nothing.
type recorder struct {
	mu    sync.Mutex
	sends []time.Time
	to    []netip.AddrPort
	err   error
}

func (r *recorder) SendTo(pkt []byte, to netip.AddrPort) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.sends = append(r.sends, time.Now())
	r.to = append(r.to, to)
	return nil
}

// response builds a Binding response with transaction id.
func response(t *testing.T, id txID, setters ...stun.Setter) []byte {
	t.Helper()
	all := append([]stun.Setter{stun.NewTransactionIDSetter(id), stun.BindingSuccess}, setters...)
	m, err := stun.Build(all...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func xorMapped(ap netip.AddrPort) stun.Setter {
	return &stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
}

// register adds an outstanding transaction, as transact does.
func register(c *Client, id txID, to, alsoFrom netip.AddrPort) *transaction {
	tx := &transaction{to: to, alsoFrom: alsoFrom, replies: make(chan reply, 1)}
	c.mu.Lock()
	c.txs[id] = tx
	c.mu.Unlock()
	return tx
}

func TestIsSTUN(t *testing.T) {
	id := txID{1, 2, 3}
	good := response(t, id, xorMapped(pub))
	cases := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"binding response", good, true},
		{"empty", nil, false},
		{"short", good[:19], false},
		{"header only", good[:20], true},
		{"first bits set", append([]byte{0x40}, good[1:]...), false},
		{"no cookie", append(append(append([]byte{}, good[:4]...), 0, 0, 0, 0), good[8:]...), false},
		{"WireGuard initiation", append([]byte{1, 0, 0, 0}, make([]byte, 144)...), false},
	}
	for _, tc := range cases {
		if got := IsSTUN(tc.pkt); got != tc.want {
			t.Errorf("%s: IsSTUN = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestHandlePacket(t *testing.T) {
	c := NewClient(&recorder{}, nil)
	id, changeID, unknownID := txID{1}, txID{2}, txID{3}
	tx := register(c, id, srvA, netip.AddrPort{})
	chTx := register(c, changeID, srvA, srvB2)
	resp := response(t, id, xorMapped(pub), &stun.OtherAddress{IP: srvB2.Addr().AsSlice(), Port: int(srvB2.Port())})

	req, err := stun.Build(stun.NewTransactionIDSetter(id), stun.BindingRequest)
	if err != nil {
		t.Fatal(err)
	}
	badFP := response(t, id, xorMapped(pub), stun.Fingerprint)
	badFP[len(badFP)-1] ^= 0xFF

	ignored := []struct {
		name string
		pkt  []byte
		from netip.AddrPort
	}{
		{"not STUN", []byte("wirelace probe...................."), srvA},
		{"WireGuard-sized junk", make([]byte, 148), srvA},
		{"unknown transaction", response(t, unknownID, xorMapped(pub)), srvA},
		{"a request, not a response", req.Raw, srvA},
		{"from another address", resp, srvB},
		{"from another port of the server", resp, srvA2},
		{"from the CHANGE-REQUEST address of another transaction", resp, srvB2},
	}
	for _, tc := range ignored {
		if c.HandlePacket(tc.pkt, tc.from) {
			t.Errorf("%s: HandlePacket = true, want false", tc.name)
		}
	}
	if len(tx.replies) != 0 {
		t.Fatal("an ignored packet was delivered")
	}

	// Ours but broken: consumed, not delivered.
	if !c.HandlePacket(badFP, srvA) {
		t.Error("bad fingerprint on our transaction: HandlePacket = false, want true")
	}
	if len(tx.replies) != 0 {
		t.Error("a response with a bad fingerprint was delivered")
	}

	// The real answer, from an IPv4-mapped source as a dual-stack socket
	// reports it.
	mappedSrc := netip.AddrPortFrom(netip.AddrFrom16(srvA.Addr().As16()), srvA.Port())
	if !c.HandlePacket(resp, mappedSrc) {
		t.Fatal("answer: HandlePacket = false, want true")
	}
	r := <-tx.replies
	if r.mapped != pub || r.other != srvB2 || r.from != srvA || !r.ok() {
		t.Errorf("reply = %+v, want mapped %s other %s from %s", r, pub, srvB2, srvA)
	}

	// Answers to retransmissions: consumed, and HandlePacket must not
	// block on the full channel.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			if !c.HandlePacket(resp, srvA) {
				t.Error("duplicate answer: HandlePacket = false, want true")
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("HandlePacket blocked on duplicate answers")
	}

	// A CHANGE-REQUEST answer from the changed address, and an error
	// answer from the server itself, are both the transaction's.
	changed := response(t, changeID, xorMapped(pub))
	if !c.HandlePacket(changed, srvB2) {
		t.Error("CHANGE-REQUEST answer from the other address: HandlePacket = false, want true")
	}
	if r := <-chTx.replies; r.from != srvB2 {
		t.Errorf("CHANGE-REQUEST reply from %s, want %s", r.from, srvB2)
	}
	refusal, err := stun.Build(stun.NewTransactionIDSetter(changeID), stun.BindingError, stun.CodeUnknownAttribute)
	if err != nil {
		t.Fatal(err)
	}
	if !c.HandlePacket(refusal.Raw, srvA) {
		t.Error("error answer: HandlePacket = false, want true")
	}
	if r := <-chTx.replies; r.ok() || r.errCode != int(stun.CodeUnknownAttribute) {
		t.Errorf("error reply = %+v, want code 420", r)
	}
	if c.HandlePacket(changed, srvB) {
		t.Error("CHANGE-REQUEST answer from an unrelated address: HandlePacket = true, want false")
	}
}

func TestParseReplyMappedAddressFallback(t *testing.T) {
	id := txID{9}
	pkt := response(t, id, &stun.MappedAddress{IP: pub.Addr().AsSlice(), Port: int(pub.Port())})
	r, err := parseReply(pkt, srvA)
	if err != nil || r.mapped != pub {
		t.Fatalf("parseReply = %+v, %v; want mapped %s", r, err, pub)
	}
	if _, err := parseReply(response(t, id), srvA); err == nil {
		t.Error("success response without a mapped address parsed without error")
	}
}

// TestRetransmitSchedule checks the sends of one unanswered transaction.
func TestRetransmitSchedule(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	c := NewClient(rec, nil)
	start := time.Now()
	_, ok, err := c.transact(context.Background(), srvA, change{}, netip.AddrPort{}, bindingTimeout)
	elapsed := time.Since(start)
	if ok || err != nil {
		t.Fatalf("transact = ok %v, err %v; want no answer, no error", ok, err)
	}
	if elapsed < bindingTimeout || elapsed > bindingTimeout+300*time.Millisecond {
		t.Errorf("gave up after %v, want %v", elapsed, bindingTimeout)
	}
	want := []time.Duration{0, 200 * time.Millisecond, 600 * time.Millisecond, 1400 * time.Millisecond}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.sends) != len(want) {
		t.Fatalf("%d sends, want %d", len(rec.sends), len(want))
	}
	for i, at := range rec.sends {
		if d := at.Sub(start) - want[i]; d < -20*time.Millisecond || d > 150*time.Millisecond {
			t.Errorf("send %d at %v, want about %v", i, at.Sub(start), want[i])
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.txs) != 0 {
		t.Errorf("%d transactions left registered", len(c.txs))
	}
}

func TestClassifyBadInput(t *testing.T) {
	c := NewClient(&recorder{}, nil)
	for _, servers := range [][]netip.AddrPort{
		nil,
		{{}},
		{netip.MustParseAddrPort("0.0.0.0:3478")},
		{netip.MustParseAddrPort("198.18.0.2:0")},
	} {
		if _, err := c.Classify(context.Background(), servers, nil); err == nil {
			t.Errorf("Classify(%v) gave no error", servers)
		}
	}
}

func TestClassifySocketFailure(t *testing.T) {
	t.Parallel()
	c := NewClient(&recorder{err: net.ErrClosed}, nil)
	_, err := c.Classify(context.Background(), []netip.AddrPort{srvA, srvB}, nil)
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("Classify with a closed socket: err = %v, want net.ErrClosed", err)
	}
}

func TestClassifyCancelled(t *testing.T) {
	t.Parallel()
	c := NewClient(&recorder{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Classify(ctx, []netip.AddrPort{srvA}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("returned %v after cancellation", d)
	}
}
