package probe

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// A captured probe opens once: sent again (from anywhere: Open does not see
// addresses) it is refused.
func TestReplayRefused(t *testing.T) {
	a, b := pair(t)
	for name, m := range sampleMessages() {
		pkt := mustSeal(t, a, m, b.pub)
		if _, _, err := b.ring.Open(pkt); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		a.clk.add(10 * time.Second) // later, but well within the window
		b.clk.add(10 * time.Second)
		if _, _, err := b.ring.Open(bytes.Clone(pkt)); !errors.Is(err, ErrReplay) {
			t.Fatalf("%s: replay: want ErrReplay, got %v", name, err)
		}
	}
}

// A probe sealed outside MaxClockSkew of the receiver's clock is refused,
// whether it is old (a capture replayed after the replay memory let go) or
// from the future (a sender whose clock runs ahead, or a capture held back).
func TestClockWindow(t *testing.T) {
	a, b := pair(t)
	for _, tc := range []struct {
		name string
		skew time.Duration // receiver's clock minus sender's
		ok   bool
	}{
		{"in sync", 0, true},
		{"old within window", MaxClockSkew - time.Second, true},
		{"future within window", -MaxClockSkew + time.Second, true},
		{"stale", MaxClockSkew + time.Second, false},
		{"future", -MaxClockSkew - time.Second, false},
	} {
		b.clk.set(a.clk.now().Add(tc.skew))
		_, _, err := b.ring.Open(mustSeal(t, a, Message{Kind: Ping}, b.pub))
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.ok && !errors.Is(err, ErrStale):
			t.Errorf("%s: want ErrStale, got %v", tc.name, err)
		}
	}
}

// Messages that overtake each other in flight all open.
func TestReorderedAccepted(t *testing.T) {
	a, b := pair(t)
	var pkts [][]byte
	for range 10 {
		pkts = append(pkts, mustSeal(t, a, Message{Kind: Ping}, b.pub))
		a.clk.add(time.Millisecond)
	}
	for i := len(pkts) - 1; i >= 0; i-- {
		if _, _, err := b.ring.Open(pkts[i]); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// The replay memory is bounded; a message it had to forget stays refused.
func TestReplayMemoryBounded(t *testing.T) {
	a, b := pair(t)
	first := mustSeal(t, a, Message{Kind: Ping}, b.pub)
	if _, _, err := b.ring.Open(first); err != nil {
		t.Fatal(err)
	}
	for range 3 * replayMemory {
		if _, _, err := b.ring.Open(mustSeal(t, a, Message{Kind: Ping}, b.pub)); err != nil {
			t.Fatal(err)
		}
	}
	w := &b.ring.member(a.pub).seen
	if len(w.order) > replayMemory || len(w.seen) > replayMemory {
		t.Fatalf("remembers %d/%d messages, at most %d", len(w.order), len(w.seen), replayMemory)
	}
	if _, _, err := b.ring.Open(first); !errors.Is(err, ErrReplay) {
		t.Fatalf("forgotten message: want ErrReplay, got %v", err)
	}
	// Time passing forgets everything, still without reopening anything.
	b.clk.add(2 * MaxClockSkew)
	a.clk.add(2 * MaxClockSkew)
	if _, _, err := b.ring.Open(mustSeal(t, a, Message{Kind: Ping}, b.pub)); err != nil {
		t.Fatal(err)
	}
	if len(w.order) != 1 {
		t.Fatalf("remembers %d messages after the window, want 1", len(w.order))
	}
}

// The shared key is computed once per member and kept while it stays a
// member; leaving the mesh forgets it.
func TestSharedKeyCached(t *testing.T) {
	a, b := pair(t)
	c := newParty(t)
	b.knows(a.pub)
	m := b.ring.member(a.pub)
	if _, _, err := b.ring.Open(mustSeal(t, a, Message{Kind: Ping}, b.pub)); err != nil {
		t.Fatal(err)
	}
	key := m.shared
	if key == nil {
		t.Fatal("no shared key after open")
	}
	b.knows(a.pub, c.pub)
	if b.ring.member(a.pub) != m || m.shared != key {
		t.Fatal("membership change dropped a member that stayed")
	}
	b.knows(c.pub)
	b.knows(a.pub, c.pub)
	if b.ring.member(a.pub) == m {
		t.Fatal("a member that left kept its state")
	}
}

// Benchmarks: the cost per probe with the shared key cached (Keyring) and
// without it (what every Seal and Open cost before: an X25519 for the
// shared key, and in Seal another for the node's own public key).

func BenchmarkSeal(b *testing.B) {
	x, y := pair(b)
	m := Message{Kind: Ping}
	b.Run("cached", func(b *testing.B) {
		for range b.N {
			if _, err := x.ring.Seal(m, y.pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		for range b.N {
			k := NewKeyring(x.priv, nil)
			k.SetMembers([]wgtypes.Key{y.pub})
			if _, err := k.Seal(m, y.pub); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	x, y := pair(b)
	seal := func(n int) [][]byte {
		pkts := make([][]byte, n)
		for i := range pkts {
			pkts[i] = mustSeal(b, x, Message{Kind: Ping}, y.pub)
		}
		return pkts
	}
	b.Run("cached", func(b *testing.B) {
		pkts := seal(b.N)
		b.ResetTimer()
		for i := range b.N {
			if _, _, err := y.ring.Open(pkts[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		pkts := seal(b.N)
		b.ResetTimer()
		for i := range b.N {
			y.knows() // forget the shared key
			y.knows(x.pub)
			if _, _, err := y.ring.Open(pkts[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOpenForged is what an attacker's probes cost the receiver: an
// unknown sender is refused before any cryptography, and a member's key
// with a forged box costs one cached-key authentication.
func BenchmarkOpenForged(b *testing.B) {
	x, y := pair(b)
	stranger := newParty(b)
	forged := func(sender wgtypes.Key) []byte {
		pkt := make([]byte, MinSize+20)
		rand.Read(pkt)
		copy(pkt, Magic)
		copy(pkt[len(Magic):], sender[:])
		return pkt
	}
	for name, pkt := range map[string][]byte{
		"unknown-sender": forged(stranger.pub),
		"member-key":     forged(x.pub),
	} {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				if _, _, err := y.ring.Open(pkt); err == nil {
					b.Fatal("forged probe opened")
				}
			}
		})
	}
}
