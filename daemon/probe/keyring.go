package probe

import (
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/nacl/box"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/internal/curvekey"
)

// MaxClockSkew is how far the sealing time of a message may lie from the
// receiver's clock, either way. Mesh nodes keep their clocks in sync (NTP,
// as Kubernetes needs anyway), so real skew is far below this; the window is
// what a replay must fall into, and what the replay memory has to cover.
const MaxClockSkew = 30 * time.Second

// replayMemory bounds the messages remembered per sender. It only has to
// exceed how many of one sender's messages can overtake another in flight
// (a few): older ones are refused by a floor instead (see replayWindow), so
// a member that sends more than this within the window loses nothing but
// badly reordered probes.
const replayMemory = 256

// Keyring seals and opens the probes of one node: it holds the node's control
// key pair, the key agreement with each mesh member (computed once per
// member, not per message), and which messages each member sent recently.
// It is safe for concurrent use; no cryptography runs under its lock.
type Keyring struct {
	priv, pub wgtypes.Key
	now       func() time.Time

	mu       sync.Mutex
	members  map[wgtypes.Key]*member // by control public key
	lastSent int64                   // sealing times are strictly increasing
}

type member struct {
	once   sync.Once
	shared *[32]byte // nil if the member's key is unusable (low order)
	seen   replayWindow
}

// key returns the shared key with pub, computing it on first use. Members
// whose key is unusable (a low-order point, whose shared key everyone knows)
// stay so: a bad key costs one X25519, not one per packet.
func (m *member) key(priv, pub wgtypes.Key) *[32]byte {
	m.once.Do(func() {
		m.shared, _ = curvekey.Precompute(priv, pub)
	})
	return m.shared
}

// NewKeyring returns a Keyring for the control private key priv, without
// members. now is the clock (nil: time.Now).
func NewKeyring(priv wgtypes.Key, now func() time.Time) *Keyring {
	if now == nil {
		now = time.Now
	}
	return &Keyring{priv: priv, pub: priv.PublicKey(), now: now, members: map[wgtypes.Key]*member{}}
}

// PublicKey is the node's control public key.
func (k *Keyring) PublicKey() wgtypes.Key { return k.pub }

// SetMembers sets the control public keys of the mesh members: the only
// nodes whose probes are opened and to whom probes are sealed. Members that
// stay keep their shared key and replay memory; the others are forgotten.
func (k *Keyring) SetMembers(keys []wgtypes.Key) {
	k.mu.Lock()
	defer k.mu.Unlock()
	next := make(map[wgtypes.Key]*member, len(keys))
	for _, pub := range keys {
		if m := k.members[pub]; m != nil {
			next[pub] = m
		} else {
			next[pub] = &member{}
		}
	}
	k.members = next
}

func (k *Keyring) member(pub wgtypes.Key) *member {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.members[pub]
}

// Seal encrypts and authenticates m for the member with control public key
// to. The result is Magic, this node's control public key, a random nonce
// and the box, whose plaintext carries the sealing time.
//
// Fields that do not belong to m.Kind must be empty, and every address must
// be a usable unicast endpoint without zone; Seal refuses anything else
// rather than send what Open would reject.
func (k *Keyring) Seal(m Message, to wgtypes.Key) ([]byte, error) {
	k.mu.Lock()
	mb := k.members[to]
	sent := max(k.now().UnixNano(), k.lastSent+1)
	k.lastSent = sent
	k.mu.Unlock()
	if mb == nil {
		return nil, fmt.Errorf("probe: %v is not a mesh member", to)
	}
	plain, err := encode(m, sent)
	if err != nil {
		return nil, err
	}
	key := mb.key(k.priv, to)
	if key == nil {
		return nil, fmt.Errorf("probe: unusable control key %v", to)
	}
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("probe nonce: %w", err)
	}
	out := make([]byte, 0, headerLen+box.Overhead+len(plain))
	out = append(out, Magic...)
	out = append(out, k.pub[:]...)
	out = append(out, nonce[:]...)
	return box.SealAfterPrecomputation(out, plain, &nonce, key), nil
}

// Open checks Magic, reads the sender's control public key, refuses
// senders that are not members (before any cryptography), opens the box,
// decodes the message strictly, and refuses it if it was sealed outside
// MaxClockSkew of now or was opened before. It returns the message and the
// sender's control public key. It never panics, whatever pkt holds, and
// does not retain pkt.
func (k *Keyring) Open(pkt []byte) (Message, wgtypes.Key, error) {
	var sender wgtypes.Key
	if !IsProbe(pkt) {
		return Message{}, sender, ErrNotProbe
	}
	if len(pkt) < headerLen+box.Overhead+minPlain {
		return Message{}, sender, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(pkt))
	}
	if len(pkt) > MaxSize {
		return Message{}, sender, fmt.Errorf("%w: %d bytes is too long", ErrMalformed, len(pkt))
	}
	sender, _ = Sender(pkt)
	if !canonical(sender) {
		// X25519 ignores the top bit and reduces mod p, so several encodings
		// name the same key; accept only the one a key pair produces, so a
		// flipped bit cannot make the same box claim another sender.
		return Message{}, sender, fmt.Errorf("%w: non-canonical sender key", ErrMalformed)
	}
	mb := k.member(sender)
	if mb == nil {
		return Message{}, sender, ErrUnknownSender
	}
	key := mb.key(k.priv, sender)
	if key == nil {
		return Message{}, sender, ErrAuth
	}
	var nonce [nonceLen]byte
	copy(nonce[:], pkt[len(Magic)+keyLen:])
	var buf [MaxSize]byte
	plain, ok := box.OpenAfterPrecomputation(buf[:0], pkt[headerLen:], &nonce, key)
	if !ok {
		return Message{}, sender, ErrAuth
	}
	m, sent, err := decode(plain)
	if err != nil {
		return Message{}, sender, err
	}
	now := k.now().UnixNano()
	if d := time.Duration(now - sent); d > MaxClockSkew || d < -MaxClockSkew {
		return Message{}, sender, fmt.Errorf("%w: sealed %v ago", ErrStale, d)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.members[sender] != mb {
		return Message{}, sender, ErrUnknownSender // removed meanwhile
	}
	if !mb.seen.accept(nonce, sent, now) {
		return Message{}, sender, ErrReplay
	}
	return m, sender, nil
}

// replayWindow remembers the messages one sender had opened, so that each
// opens once. A message sealed at or before floor is refused outright: the
// floor rises past every message forgotten, whether because it left the
// clock window or to make room, so a forgotten message can never open again.
type replayWindow struct {
	floor int64
	seen  map[[nonceLen]byte]struct{}
	order []seenMsg // arrival order, oldest first
}

type seenMsg struct {
	nonce [nonceLen]byte
	sent  int64
}

// accept reports whether the message (nonce, sealed at sent) is new, and
// remembers it. now is the receiver's clock.
func (w *replayWindow) accept(nonce [nonceLen]byte, sent, now int64) bool {
	if w.seen == nil {
		w.seen = map[[nonceLen]byte]struct{}{}
	}
	oldest := now - int64(MaxClockSkew)
	for len(w.order) > 0 && (w.order[0].sent < oldest || len(w.order) >= replayMemory) {
		w.forget()
	}
	if sent <= w.floor {
		return false
	}
	if _, dup := w.seen[nonce]; dup {
		return false
	}
	w.seen[nonce] = struct{}{}
	w.order = append(w.order, seenMsg{nonce, sent})
	return true
}

func (w *replayWindow) forget() {
	f := w.order[0]
	delete(w.seen, f.nonce)
	w.floor = max(w.floor, f.sent)
	w.order = w.order[1:]
}
