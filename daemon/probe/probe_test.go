package probe

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/curvekey"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// clock is a fake clock a test moves by hand.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }

// party is one node: its control key pair and its Keyring, on a clock of
// its own.
type party struct {
	priv, pub wgtypes.Key
	clk       *clock
	ring      *Keyring
}

func newParty(t testing.TB) party {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	return party{k, k.PublicKey(), clk, NewKeyring(k, clk.now)}
}

// knows makes p's members exactly keys.
func (p party) knows(keys ...wgtypes.Key) party {
	p.ring.SetMembers(keys)
	return p
}

// pair returns two parties that are members of each other's mesh.
func pair(t testing.TB) (party, party) {
	a, b := newParty(t), newParty(t)
	a.knows(b.pub)
	b.knows(a.pub)
	return a, b
}

func mustSeal(t testing.TB, from party, m Message, to wgtypes.Key) []byte {
	t.Helper()
	pkt, err := from.ring.Seal(m, to)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

func sampleMessages() map[string]Message {
	tx := [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	var many []netip.AddrPort
	for i := range MaxCandidates {
		many = append(many, netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)}), uint16(51820+i)))
	}
	return map[string]Message{
		"ping":      {Kind: Ping, TxID: tx},
		"pong v4":   {Kind: Pong, TxID: tx, Observed: netip.MustParseAddrPort("198.18.0.5:51820")},
		"pong v6":   {Kind: Pong, TxID: tx, Observed: netip.MustParseAddrPort("[2001:db8::5]:4500")},
		"pong 4in6": {Kind: Pong, TxID: tx, Observed: netip.MustParseAddrPort("[::ffff:198.18.0.5]:1")},
		"cmm empty": {Kind: CallMeMaybe, TxID: tx},
		"cmm": {Kind: CallMeMaybe, TxID: tx, Candidates: []netip.AddrPort{
			netip.MustParseAddrPort("10.0.0.2:51820"),
			netip.MustParseAddrPort("198.18.0.5:61000"),
			netip.MustParseAddrPort("[2001:db8::2]:51820"),
		}},
		"cmm max":   {Kind: CallMeMaybe, TxID: tx, Candidates: many},
		"handshake": {Kind: Handshake, TxID: tx},
	}
}

func TestRoundTrip(t *testing.T) {
	a, b := pair(t)
	for name, m := range sampleMessages() {
		t.Run(name, func(t *testing.T) {
			pkt := mustSeal(t, a, m, b.pub)
			if !IsProbe(pkt) {
				t.Fatal("IsProbe false for a sealed probe")
			}
			if len(pkt) > MaxSize {
				t.Fatalf("%d bytes > MaxSize %d", len(pkt), MaxSize)
			}
			if len(pkt) < MinSize {
				t.Fatalf("%d bytes < MinSize %d", len(pkt), MinSize)
			}
			got, sender, err := b.ring.Open(pkt)
			if err != nil {
				t.Fatal(err)
			}
			if sender != a.pub {
				t.Fatalf("sender %v, want %v", sender, a.pub)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("got %+v, want %+v", got, m)
			}
		})
	}
}

func TestPingNotSmallerThanPong(t *testing.T) {
	a, b := pair(t)
	ping := mustSeal(t, a, Message{Kind: Ping}, b.pub)
	pong := mustSeal(t, b, Message{Kind: Pong, Observed: netip.MustParseAddrPort("[2001:db8::1]:1")}, a.pub)
	if len(ping) < len(pong) {
		t.Fatalf("ping %d bytes < pong %d bytes: amplification", len(ping), len(pong))
	}
}

func TestNoncesDiffer(t *testing.T) {
	a, b := pair(t)
	p1 := mustSeal(t, a, Message{Kind: Ping}, b.pub)
	p2 := mustSeal(t, a, Message{Kind: Ping}, b.pub)
	if bytes.Equal(p1, p2) {
		t.Fatal("two seals of the same message are identical")
	}
}

func TestTamperAnyByte(t *testing.T) {
	a, b := pair(t)
	for name, m := range sampleMessages() {
		pkt := mustSeal(t, a, m, b.pub)
		for i := range pkt {
			for _, flip := range []byte{0x01, 0x80, 0xff} {
				bad := bytes.Clone(pkt)
				bad[i] ^= flip
				// Whatever the byte, the packet must be refused: a changed
				// sender key is either unknown or fails authentication.
				b.knows(a.pub, bad2key(bad))
				if _, _, err := b.ring.Open(bad); err == nil {
					t.Fatalf("%s: byte %d ^ %#x accepted", name, i, flip)
				}
			}
		}
		b.knows(a.pub)
		if _, _, err := b.ring.Open(append(bytes.Clone(pkt), 0)); err == nil {
			t.Fatalf("%s: appended byte accepted", name)
		}
	}
}

// bad2key is the sender key field of pkt, so tampering with it is tested
// against the box, not only the membership check.
func bad2key(pkt []byte) wgtypes.Key {
	var k wgtypes.Key
	if len(pkt) >= len(Magic)+32 {
		copy(k[:], pkt[len(Magic):])
	}
	return k
}

func TestWrongReceiver(t *testing.T) {
	a, b := pair(t)
	c := newParty(t).knows(a.pub)
	pkt := mustSeal(t, a, Message{Kind: Ping}, b.pub)
	if _, _, err := c.ring.Open(pkt); !errors.Is(err, ErrAuth) {
		t.Fatalf("opened by the wrong receiver: %v", err)
	}
}

func TestUnknownSender(t *testing.T) {
	a, b := pair(t)
	c := newParty(t)
	pkt := mustSeal(t, a, Message{Kind: Ping}, b.pub)
	b.knows(c.pub)
	if _, _, err := b.ring.Open(pkt); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("want ErrUnknownSender, got %v", err)
	}
	b.knows()
	if _, _, err := b.ring.Open(pkt); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("no members: want ErrUnknownSender, got %v", err)
	}
	// Nor is anything sealed to a node outside the mesh.
	if _, err := a.ring.Seal(Message{Kind: Ping}, c.pub); err == nil {
		t.Fatal("sealed to a non-member")
	}
	// A member that comes back is a member again.
	b.knows(a.pub)
	if _, _, err := b.ring.Open(pkt); err != nil {
		t.Fatalf("member again: %v", err)
	}
}

// A third party that knows both public keys cannot forge a message that
// opens as coming from a: it would need a's or b's private key.
func TestImpersonation(t *testing.T) {
	a, b := pair(t)
	mallory := newParty(t).knows(b.pub)
	pkt := mustSeal(t, mallory, Message{Kind: Pong, Observed: netip.MustParseAddrPort("1.2.3.4:5")}, b.pub)
	copy(pkt[len(Magic):], a.pub[:]) // claim to be a
	if _, _, err := b.ring.Open(pkt); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged sender accepted: %v", err)
	}
}

// A low-order public key gives an all-zero shared secret that anyone can
// compute; Open must refuse it even if the membership check let it through.
func TestLowOrderSenderRefused(t *testing.T) {
	b := newParty(t)
	var zero wgtypes.Key // the point 0 has low order
	var nonce [24]byte
	var key [32]byte // what box.Precompute would derive from a zero secret
	kp := func() *[32]byte {
		k := [32]byte(zero)
		p := [32]byte(b.priv)
		box.Precompute(&key, &k, &p)
		return &key
	}()
	plain, _ := encode(Message{Kind: Ping}, b.clk.now().UnixNano())
	pkt := append([]byte(Magic), zero[:]...)
	pkt = append(pkt, nonce[:]...)
	pkt = box.SealAfterPrecomputation(pkt, plain, &nonce, kp)
	b.knows(zero)
	for range 2 { // the refusal is remembered, not recomputed
		if _, _, err := b.ring.Open(pkt); err == nil {
			t.Fatal("low-order sender accepted")
		}
	}
	if _, err := b.ring.Seal(Message{Kind: Ping}, zero); err == nil {
		t.Fatal("sealed to a low-order key")
	}
}

func TestPrecomputedKeyMatchesBox(t *testing.T) {
	a, b := newParty(t), newParty(t)
	got, err := curvekey.Precompute(a.priv, b.pub)
	if err != nil {
		t.Fatal(err)
	}
	var want [32]byte
	pub, priv := [32]byte(b.pub), [32]byte(a.priv)
	box.Precompute(&want, &pub, &priv)
	if *got != want {
		t.Fatal("curvekey.Precompute differs from box.Precompute")
	}
	// And a message sealed with plain nacl/box opens with Open.
	var nonce [24]byte
	plain, _ := encode(Message{Kind: Ping, TxID: [12]byte{9}}, b.clk.now().UnixNano())
	pkt := append([]byte(Magic), a.pub[:]...)
	pkt = append(pkt, nonce[:]...)
	bpub, apriv := [32]byte(b.pub), [32]byte(a.priv)
	pkt = box.Seal(pkt, plain, &nonce, &bpub, &apriv)
	b.knows(a.pub)
	m, _, err := b.ring.Open(pkt)
	if err != nil || m.TxID != [12]byte{9} {
		t.Fatalf("interop: %+v %v", m, err)
	}
}

func TestSealRefuses(t *testing.T) {
	a, b := pair(t)
	ap := netip.MustParseAddrPort("1.2.3.4:5")
	tooMany := make([]netip.AddrPort, MaxCandidates+1)
	for i := range tooMany {
		tooMany[i] = ap
	}
	for name, m := range map[string]Message{
		"kind 0":              {},
		"kind 9":              {Kind: 9},
		"ping with addr":      {Kind: Ping, Observed: ap},
		"ping with cands":     {Kind: Ping, Candidates: []netip.AddrPort{ap}},
		"pong without addr":   {Kind: Pong},
		"pong port 0":         {Kind: Pong, Observed: netip.MustParseAddrPort("1.2.3.4:0")},
		"pong unspecified":    {Kind: Pong, Observed: netip.MustParseAddrPort("0.0.0.0:1")},
		"pong multicast":      {Kind: Pong, Observed: netip.MustParseAddrPort("[ff02::1]:1")},
		"pong zone":           {Kind: Pong, Observed: netip.MustParseAddrPort("[fe80::1%eth0]:1")},
		"pong with cands":     {Kind: Pong, Observed: ap, Candidates: []netip.AddrPort{ap}},
		"cmm too many":        {Kind: CallMeMaybe, Candidates: tooMany},
		"cmm bad cand":        {Kind: CallMeMaybe, Candidates: []netip.AddrPort{{}}},
		"cmm with observed":   {Kind: CallMeMaybe, Observed: ap},
		"handshake with addr": {Kind: Handshake, Observed: ap},
	} {
		if _, err := a.ring.Seal(m, b.pub); err == nil {
			t.Errorf("%s: sealed", name)
		}
	}
}

// sealRaw boxes an arbitrary plaintext, to test the strict decoder behind
// a valid box.
func sealRaw(t *testing.T, plain []byte, a, b party) []byte {
	key, err := curvekey.Precompute(a.priv, b.pub)
	if err != nil {
		t.Fatal(err)
	}
	var nonce [24]byte
	rand.Read(nonce[:])
	pkt := append([]byte(Magic), a.pub[:]...)
	pkt = append(pkt, nonce[:]...)
	return box.SealAfterPrecomputation(pkt, plain, &nonce, key)
}

func TestStrictDecode(t *testing.T) {
	a, b := pair(t)
	// The sealing time and the TxID.
	tx := append(binary.BigEndian.AppendUint64(nil, uint64(b.clk.now().UnixNano())), make([]byte, 12)...)
	ep4 := []byte{4, 198, 18, 0, 5, 0xca, 0x6c}
	cases := map[string][]byte{
		"empty":              {},
		"kind only":          {byte(Ping)},
		"unknown kind":       append(append([]byte{7}, tx...), make([]byte, 19)...),
		"ping short pad":     append(append([]byte{byte(Ping)}, tx...), make([]byte, 18)...),
		"ping long pad":      append(append([]byte{byte(Ping)}, tx...), make([]byte, 20)...),
		"ping nonzero pad":   append(append(append([]byte{byte(Ping)}, tx...), make([]byte, 18)...), 1),
		"pong no addr":       append([]byte{byte(Pong)}, tx...),
		"pong family 5":      append(append([]byte{byte(Pong)}, tx...), 5, 1, 2, 3, 4, 0, 1),
		"pong short v4":      append(append([]byte{byte(Pong)}, tx...), ep4[:6]...),
		"pong short v6":      append(append([]byte{byte(Pong)}, tx...), append([]byte{6}, make([]byte, 10)...)...),
		"pong trailing":      append(append(append([]byte{byte(Pong)}, tx...), ep4...), 0),
		"pong port 0":        append(append([]byte{byte(Pong)}, tx...), 4, 1, 2, 3, 4, 0, 0),
		"pong unspecified":   append(append([]byte{byte(Pong)}, tx...), 4, 0, 0, 0, 0, 0, 1),
		"cmm no count":       append([]byte{byte(CallMeMaybe)}, tx...),
		"cmm count too big":  append(append([]byte{byte(CallMeMaybe)}, tx...), MaxCandidates+1),
		"cmm count mismatch": append(append(append([]byte{byte(CallMeMaybe)}, tx...), 2), ep4...),
		"cmm trailing":       append(append(append(append([]byte{byte(CallMeMaybe)}, tx...), 1), ep4...), 9),
		"handshake no body":  append([]byte{byte(Handshake)}, tx...),
		"handshake nonzero":  append(append([]byte{byte(Handshake)}, tx...), 1),
		"handshake long":     append(append([]byte{byte(Handshake)}, tx...), 0, 0),
	}
	for name, plain := range cases {
		pkt := sealRaw(t, plain, a, b)
		_, _, err := b.ring.Open(pkt)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The well-formed counterpart is accepted (so the cases above fail for
	// the reason they test).
	good := append(append(append([]byte{byte(CallMeMaybe)}, tx...), 1), ep4...)
	m, _, err := b.ring.Open(sealRaw(t, good, a, b))
	if err != nil || len(m.Candidates) != 1 || m.Candidates[0] != netip.MustParseAddrPort("198.18.0.5:51820") {
		t.Fatalf("good cmm: %+v %v", m, err)
	}
}

func TestTruncatedNeverPanics(t *testing.T) {
	a, b := pair(t)
	for name, m := range sampleMessages() {
		pkt := mustSeal(t, a, m, b.pub)
		for n := 0; n < len(pkt); n++ {
			if _, _, err := b.ring.Open(pkt[:n]); err == nil {
				t.Fatalf("%s: truncated to %d accepted", name, n)
			}
		}
	}
}

func TestIsProbe(t *testing.T) {
	wg := func(typ uint32, size int) []byte {
		b := make([]byte, size)
		binary.LittleEndian.PutUint32(b, typ)
		for i := 4; i < size; i++ {
			b[i] = byte(i * 7)
		}
		return b
	}
	stun := func(typ uint16, bodyLen int) []byte {
		b := make([]byte, 20+bodyLen)
		binary.BigEndian.PutUint16(b, typ)
		binary.BigEndian.PutUint16(b[2:], uint16(bodyLen))
		binary.BigEndian.PutUint32(b[4:], 0x2112A442)
		return b
	}
	for name, pkt := range map[string][]byte{
		"nil":                  nil,
		"short magic":          []byte(Magic[:len(Magic)-1]),
		"wg initiation":        wg(1, 148),
		"wg response":          wg(2, 92),
		"wg cookie":            wg(3, 64),
		"wg transport":         wg(4, 32),
		"wg transport big":     wg(4, 1420),
		"stun binding request": stun(0x0001, 8),
		"stun binding success": stun(0x0101, 12),
		"stun binding error":   stun(0x0111, 0),
		"zeros":                make([]byte, 200),
	} {
		if IsProbe(pkt) {
			t.Errorf("%s: IsProbe true", name)
		}
	}
	// And the converse: a probe is not WireGuard-shaped nor STUN-shaped.
	a, b := pair(t)
	for name, m := range sampleMessages() {
		pkt := mustSeal(t, a, m, b.pub)
		if typ := binary.LittleEndian.Uint32(pkt); typ >= 1 && typ <= 4 {
			t.Errorf("%s: looks like WireGuard type %d", name, typ)
		}
		if pkt[0]>>6 == 0 || binary.BigEndian.Uint32(pkt[4:]) == 0x2112A442 {
			t.Errorf("%s: looks like STUN", name)
		}
	}
	if !IsProbe([]byte(Magic)) {
		t.Error("IsProbe false for the bare magic")
	}
}

func FuzzOpen(f *testing.F) {
	a, b := pair(f)
	for _, m := range sampleMessages() {
		f.Add(mustSeal(f, a, m, b.pub))
	}
	f.Add([]byte{})
	f.Add([]byte(Magic))
	f.Add(append([]byte(Magic), make([]byte, 100)...))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		m, sender, err := b.ring.Open(pkt)
		if err != nil {
			return
		}
		// Anything Open accepts is well-formed: it seals again and opens to
		// the same message.
		if sender != a.pub {
			t.Fatalf("accepted sender %v", sender)
		}
		again, err := a.ring.Seal(m, b.pub)
		if err != nil {
			t.Fatalf("accepted message does not seal: %+v: %v", m, err)
		}
		m2, _, err := b.ring.Open(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-seal: %+v vs %+v (%v)", m, m2, err)
		}
	})
}

// FuzzDecode reaches the strict decoder directly, which FuzzOpen rarely can
// (the fuzzer cannot forge boxes).
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		b, err := encode(m, t0.UnixNano())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, sent, err := decode(b)
		if err != nil {
			return
		}
		enc, err := encode(m, sent)
		if err != nil {
			t.Fatalf("decoded message does not encode: %+v: %v", m, err)
		}
		m2, sent2, err := decode(enc)
		if err != nil || !reflect.DeepEqual(m, m2) || sent != sent2 {
			t.Fatalf("re-encode: %+v vs %+v (%v)", m, m2, err)
		}
	})
}

func TestCanonical(t *testing.T) {
	var k wgtypes.Key
	if !canonical(k) {
		t.Error("0 not canonical")
	}
	for i := range k {
		k[i] = 0xff
	}
	k[31] = 0x7f
	k[0] = 0xec // p - 1
	if !canonical(k) {
		t.Error("p-1 not canonical")
	}
	k[0] = 0xed // p
	if canonical(k) {
		t.Error("p canonical")
	}
	k[0] = 0
	k[31] = 0x80
	if canonical(k) {
		t.Error("top bit set canonical")
	}
	for range 100 {
		if p := newParty(t); !canonical(p.pub) {
			t.Fatalf("generated key %v not canonical", p.pub)
		}
	}
}
