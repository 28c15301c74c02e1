package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/crypto/nacl/box"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

type party struct {
	priv, pub wgtypes.Key
}

func newParty(t testing.TB) party {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return party{k, k.PublicKey()}
}

func only(keys ...wgtypes.Key) func(wgtypes.Key) bool {
	return func(k wgtypes.Key) bool {
		for _, x := range keys {
			if x == k {
				return true
			}
		}
		return false
	}
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
		"cmm max": {Kind: CallMeMaybe, TxID: tx, Candidates: many},
	}
}

func TestRoundTrip(t *testing.T) {
	a, b := newParty(t), newParty(t)
	for name, m := range sampleMessages() {
		t.Run(name, func(t *testing.T) {
			pkt, err := Seal(m, a.priv, b.pub)
			if err != nil {
				t.Fatal(err)
			}
			if !IsProbe(pkt) {
				t.Fatal("IsProbe false for a sealed probe")
			}
			if len(pkt) > MaxSize {
				t.Fatalf("%d bytes > MaxSize %d", len(pkt), MaxSize)
			}
			if len(pkt) < MinSize {
				t.Fatalf("%d bytes < MinSize %d", len(pkt), MinSize)
			}
			got, sender, err := Open(pkt, b.priv, only(a.pub))
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
	a, b := newParty(t), newParty(t)
	ping, _ := Seal(Message{Kind: Ping}, a.priv, b.pub)
	pong, _ := Seal(Message{Kind: Pong, Observed: netip.MustParseAddrPort("[2001:db8::1]:1")}, b.priv, a.pub)
	if len(ping) < len(pong) {
		t.Fatalf("ping %d bytes < pong %d bytes: amplification", len(ping), len(pong))
	}
}

func TestNoncesDiffer(t *testing.T) {
	a, b := newParty(t), newParty(t)
	p1, _ := Seal(Message{Kind: Ping}, a.priv, b.pub)
	p2, _ := Seal(Message{Kind: Ping}, a.priv, b.pub)
	if bytes.Equal(p1, p2) {
		t.Fatal("two seals of the same message are identical")
	}
}

func TestTamperAnyByte(t *testing.T) {
	a, b := newParty(t), newParty(t)
	for name, m := range sampleMessages() {
		pkt, err := Seal(m, a.priv, b.pub)
		if err != nil {
			t.Fatal(err)
		}
		for i := range pkt {
			for _, flip := range []byte{0x01, 0x80, 0xff} {
				bad := bytes.Clone(pkt)
				bad[i] ^= flip
				// Whatever the byte, the packet must be refused: a changed
				// sender key is either unknown or fails authentication.
				if _, _, err := Open(bad, b.priv, only(a.pub, bad2key(bad))); err == nil {
					t.Fatalf("%s: byte %d ^ %#x accepted", name, i, flip)
				}
			}
		}
		if _, _, err := Open(append(bytes.Clone(pkt), 0), b.priv, only(a.pub)); err == nil {
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
	a, b, c := newParty(t), newParty(t), newParty(t)
	pkt, _ := Seal(Message{Kind: Ping}, a.priv, b.pub)
	if _, _, err := Open(pkt, c.priv, only(a.pub)); !errors.Is(err, ErrAuth) {
		t.Fatalf("opened by the wrong receiver: %v", err)
	}
}

func TestUnknownSender(t *testing.T) {
	a, b, c := newParty(t), newParty(t), newParty(t)
	pkt, _ := Seal(Message{Kind: Ping}, a.priv, b.pub)
	if _, _, err := Open(pkt, b.priv, only(c.pub)); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("want ErrUnknownSender, got %v", err)
	}
	if _, _, err := Open(pkt, b.priv, nil); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("nil known: want ErrUnknownSender, got %v", err)
	}
}

// A third party that knows both public keys cannot forge a message that
// opens as coming from a: it would need a's or b's private key.
func TestImpersonation(t *testing.T) {
	a, b, mallory := newParty(t), newParty(t), newParty(t)
	pkt, _ := Seal(Message{Kind: Pong, Observed: netip.MustParseAddrPort("1.2.3.4:5")}, mallory.priv, b.pub)
	copy(pkt[len(Magic):], a.pub[:]) // claim to be a
	if _, _, err := Open(pkt, b.priv, only(a.pub)); !errors.Is(err, ErrAuth) {
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
	plain, _ := encode(Message{Kind: Ping})
	pkt := append([]byte(Magic), zero[:]...)
	pkt = append(pkt, nonce[:]...)
	pkt = box.SealAfterPrecomputation(pkt, plain, &nonce, kp)
	if _, _, err := Open(pkt, b.priv, func(wgtypes.Key) bool { return true }); err == nil {
		t.Fatal("low-order sender accepted")
	}
}

func TestSharedKeyMatchesBox(t *testing.T) {
	a, b := newParty(t), newParty(t)
	got, err := sharedKey(a.priv, b.pub)
	if err != nil {
		t.Fatal(err)
	}
	var want [32]byte
	pub, priv := [32]byte(b.pub), [32]byte(a.priv)
	box.Precompute(&want, &pub, &priv)
	if *got != want {
		t.Fatal("sharedKey differs from box.Precompute")
	}
	// And a message sealed with plain nacl/box opens with Open.
	var nonce [24]byte
	plain, _ := encode(Message{Kind: Ping, TxID: [12]byte{9}})
	pkt := append([]byte(Magic), a.pub[:]...)
	pkt = append(pkt, nonce[:]...)
	bpub, apriv := [32]byte(b.pub), [32]byte(a.priv)
	pkt = box.Seal(pkt, plain, &nonce, &bpub, &apriv)
	m, _, err := Open(pkt, b.priv, only(a.pub))
	if err != nil || m.TxID != [12]byte{9} {
		t.Fatalf("interop: %+v %v", m, err)
	}
}

func TestSealRefuses(t *testing.T) {
	a, b := newParty(t), newParty(t)
	ap := netip.MustParseAddrPort("1.2.3.4:5")
	tooMany := make([]netip.AddrPort, MaxCandidates+1)
	for i := range tooMany {
		tooMany[i] = ap
	}
	for name, m := range map[string]Message{
		"kind 0":            {},
		"kind 9":            {Kind: 9},
		"ping with addr":    {Kind: Ping, Observed: ap},
		"ping with cands":   {Kind: Ping, Candidates: []netip.AddrPort{ap}},
		"pong without addr": {Kind: Pong},
		"pong port 0":       {Kind: Pong, Observed: netip.MustParseAddrPort("1.2.3.4:0")},
		"pong unspecified":  {Kind: Pong, Observed: netip.MustParseAddrPort("0.0.0.0:1")},
		"pong multicast":    {Kind: Pong, Observed: netip.MustParseAddrPort("[ff02::1]:1")},
		"pong zone":         {Kind: Pong, Observed: netip.MustParseAddrPort("[fe80::1%eth0]:1")},
		"pong with cands":   {Kind: Pong, Observed: ap, Candidates: []netip.AddrPort{ap}},
		"cmm too many":      {Kind: CallMeMaybe, Candidates: tooMany},
		"cmm bad cand":      {Kind: CallMeMaybe, Candidates: []netip.AddrPort{{}}},
		"cmm with observed": {Kind: CallMeMaybe, Observed: ap},
	} {
		if _, err := Seal(m, a.priv, b.pub); err == nil {
			t.Errorf("%s: sealed", name)
		}
	}
}

// sealRaw boxes an arbitrary plaintext, to test the strict decoder behind
// a valid box.
func sealRaw(t *testing.T, plain []byte, a, b party) []byte {
	key, err := sharedKey(a.priv, b.pub)
	if err != nil {
		t.Fatal(err)
	}
	var nonce [24]byte
	pkt := append([]byte(Magic), a.pub[:]...)
	pkt = append(pkt, nonce[:]...)
	return box.SealAfterPrecomputation(pkt, plain, &nonce, key)
}

func TestStrictDecode(t *testing.T) {
	a, b := newParty(t), newParty(t)
	tx := make([]byte, 12)
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
	}
	for name, plain := range cases {
		pkt := sealRaw(t, plain, a, b)
		_, _, err := Open(pkt, b.priv, only(a.pub))
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The well-formed counterpart is accepted (so the cases above fail for
	// the reason they test).
	good := append(append(append([]byte{byte(CallMeMaybe)}, tx...), 1), ep4...)
	m, _, err := Open(sealRaw(t, good, a, b), b.priv, only(a.pub))
	if err != nil || len(m.Candidates) != 1 || m.Candidates[0] != netip.MustParseAddrPort("198.18.0.5:51820") {
		t.Fatalf("good cmm: %+v %v", m, err)
	}
}

func TestTruncatedNeverPanics(t *testing.T) {
	a, b := newParty(t), newParty(t)
	for name, m := range sampleMessages() {
		pkt, _ := Seal(m, a.priv, b.pub)
		for n := 0; n < len(pkt); n++ {
			if _, _, err := Open(pkt[:n], b.priv, only(a.pub)); err == nil {
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
	a, b := newParty(t), newParty(t)
	for name, m := range sampleMessages() {
		pkt, _ := Seal(m, a.priv, b.pub)
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
	a, b := newParty(f), newParty(f)
	for _, m := range sampleMessages() {
		pkt, err := Seal(m, a.priv, b.pub)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pkt)
	}
	f.Add([]byte{})
	f.Add([]byte(Magic))
	f.Add(append([]byte(Magic), make([]byte, 100)...))
	known := only(a.pub)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		m, sender, err := Open(pkt, b.priv, known)
		if err != nil {
			return
		}
		// Anything Open accepts is well-formed: it seals again and opens to
		// the same message.
		if sender != a.pub {
			t.Fatalf("accepted sender %v", sender)
		}
		again, err := Seal(m, a.priv, b.pub)
		if err != nil {
			t.Fatalf("accepted message does not seal: %+v: %v", m, err)
		}
		m2, _, err := Open(again, b.priv, known)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-seal: %+v vs %+v (%v)", m, m2, err)
		}
	})
}

// FuzzDecode reaches the strict decoder directly, which FuzzOpen rarely can
// (the fuzzer cannot forge boxes).
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		b, err := encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			return
		}
		enc, err := encode(m)
		if err != nil {
			t.Fatalf("decoded message does not encode: %+v: %v", m, err)
		}
		m2, err := decode(enc)
		if err != nil || !reflect.DeepEqual(m, m2) {
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
