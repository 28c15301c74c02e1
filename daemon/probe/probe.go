// Package probe is the wire format of Wirelace's path probes: small messages
// that nodes exchange on the WireGuard UDP socket (Ping, Pong) and through the
// relay (CallMeMaybe) to find and confirm direct paths.
//
// Every message is a NaCl box from the sender's control key to the receiver's
// control key (each node publishes its control public key in its MeshNode; it
// is distinct from the WireGuard key). So nobody outside the mesh can make a
// node believe in a path: a Pong only counts if it opens with the key of the
// node that was pinged, and only mesh members' keys are accepted at all.
//
// Every message also carries the time it was sealed, and a Keyring opens each
// message at most once and only within MaxClockSkew of its own clock, so a
// captured probe cannot be replayed (from another address, say) to make a node
// answer or believe in that address.
//
// The package does no I/O and starts no goroutines. The daemon reads packets,
// tells probes apart from WireGuard and STUN with IsProbe, and seals and opens
// them with a Keyring, which caches the key agreement with each member (an
// X25519 costs tens of microseconds; a cached open costs about one).
//
// Wire format (version 2):
//
//	Magic (5) | sender control public key (32) | nonce (24) | box(plaintext)
//
// plaintext:
//
//	kind (1) | sent (8: unix nanoseconds, big endian) | txid (12) | body
//	  Ping:        19 zero bytes (padding: a Ping is never smaller than its
//	               Pong, so a spoofed Ping cannot be used for amplification)
//	  Pong:        observed endpoint
//	  CallMeMaybe: count (1, at most MaxCandidates) | count × endpoint
//	  Handshake:   1 zero byte
//
// endpoint:
//
//	family (1: 4 or 6) | address (4 or 16) | port (2, big endian)
package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/crypto/nacl/box"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Magic starts every probe packet. Its first byte, 0xFE, keeps it apart from
// everything else on the socket:
//   - WireGuard messages start with a little-endian uint32 type 1..4, so their
//     first byte is 1..4 and the next three are zero;
//   - STUN messages start with the two bits 00 (first byte < 0x40) and carry
//     the magic cookie 0x2112A442 at offset 4.
//
// The last byte is the format version: 2 added the sealing time. Nodes of
// different versions do not understand each other's probes (each takes the
// other's for an unknown packet), so they use the relay until both run the
// same version.
const Magic = "\xfeWLP\x02"

// Kind is the type of a probe message.
type Kind uint8

const (
	// Ping asks the receiver to answer with a Pong to the address the Ping
	// came from. Sent directly to a candidate endpoint.
	Ping Kind = 1
	// Pong answers a Ping, echoing its TxID and telling the pinger the source
	// address its Ping arrived from (its mapped address, as STUN would).
	Pong Kind = 2
	// CallMeMaybe, sent through the relay, tells the receiver the sender's
	// current candidate endpoints and asks it to probe them at once, so both
	// sides send at the same moment (simultaneous open through NATs).
	CallMeMaybe Kind = 3
	// Handshake, sent through the relay, asks the receiver to start a
	// WireGuard handshake with the sender now. A node sends it when its own
	// first handshake went out before any path worked (its relay was not
	// yet connected) and was lost: WireGuard retries only after 5 s, but
	// the receiver has sent none and may start one at once.
	Handshake Kind = 4
)

func (k Kind) String() string {
	switch k {
	case Ping:
		return "ping"
	case Pong:
		return "pong"
	case CallMeMaybe:
		return "call-me-maybe"
	case Handshake:
		return "handshake"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// MaxCandidates bounds the candidate list of a CallMeMaybe.
const MaxCandidates = 16

const (
	keyLen      = 32
	nonceLen    = 24
	txidLen     = 12
	timeLen     = 8
	endpoint4   = 1 + 4 + 2
	endpoint6   = 1 + 16 + 2
	pingPadding = endpoint6 // a Ping is as large as the largest Pong
	headerLen   = len(Magic) + keyLen + nonceLen
	minPlain    = 1 + timeLen + txidLen
)

// MaxSize is the size of the largest message Seal produces (a CallMeMaybe
// with MaxCandidates IPv6 endpoints), so receive buffers can be sized.
const MaxSize = headerLen + box.Overhead + minPlain + 1 + MaxCandidates*endpoint6

// MinSize is the size of the smallest valid probe (a CallMeMaybe without
// candidates).
const MinSize = headerLen + box.Overhead + minPlain + 1

// Message is one decoded probe.
type Message struct {
	Kind Kind
	TxID [12]byte
	// Observed, in a Pong only: the source address the Ping came from, so
	// the pinger learns its own mapped address.
	Observed netip.AddrPort
	// Candidates, in a CallMeMaybe only: the sender's current candidate
	// endpoints; the receiver starts probing them at once.
	Candidates []netip.AddrPort
}

// Errors returned by Open (wrapped; test with errors.Is).
var (
	ErrNotProbe      = errors.New("not a probe packet")
	ErrUnknownSender = errors.New("sender is not a mesh member")
	ErrAuth          = errors.New("probe does not authenticate")
	ErrMalformed     = errors.New("malformed probe")
	// ErrStale: the message was sealed more than MaxClockSkew before or
	// after the receiver's clock.
	ErrStale = errors.New("probe outside the clock window")
	// ErrReplay: the message was opened before.
	ErrReplay = errors.New("probe replayed")
)

// IsProbe reports whether pkt is meant to be a probe (it starts with Magic).
// It says nothing about validity: Open decides that.
func IsProbe(pkt []byte) bool {
	return len(pkt) >= len(Magic) && string(pkt[:len(Magic)]) == Magic
}

// Sender returns the control public key a probe claims to be sealed by,
// without checking the claim (Open does): enough to drop, before any
// cryptography, a probe whose claimed sender cannot be right where it came
// from.
func Sender(pkt []byte) (wgtypes.Key, bool) {
	var k wgtypes.Key
	if !IsProbe(pkt) || len(pkt) < len(Magic)+keyLen {
		return k, false
	}
	copy(k[:], pkt[len(Magic):])
	return k, true
}

// canonical reports whether k is a canonical curve25519 u-coordinate: less
// than p = 2^255 - 19 (which also means the top bit is clear).
func canonical(k wgtypes.Key) bool {
	if k[31] < 0x7f {
		return true
	}
	if k[31] > 0x7f {
		return false
	}
	for i := 30; i >= 1; i-- {
		if k[i] != 0xff {
			return true
		}
	}
	return k[0] < 0xed
}

// encode is the plaintext of m, sealed at sent (unix nanoseconds).
func encode(m Message, sent int64) ([]byte, error) {
	b := make([]byte, 0, minPlain+1+len(m.Candidates)*endpoint6)
	b = append(b, byte(m.Kind))
	b = binary.BigEndian.AppendUint64(b, uint64(sent))
	b = append(b, m.TxID[:]...)
	switch m.Kind {
	case Ping:
		if m.Observed.IsValid() || len(m.Candidates) > 0 {
			return nil, errors.New("probe: a ping carries no address")
		}
		b = append(b, make([]byte, pingPadding)...)
	case Pong:
		if len(m.Candidates) > 0 {
			return nil, errors.New("probe: a pong carries no candidates")
		}
		if err := checkEndpoint(m.Observed); err != nil {
			return nil, fmt.Errorf("probe: pong observed address: %w", err)
		}
		b = appendEndpoint(b, m.Observed)
	case CallMeMaybe:
		if m.Observed.IsValid() {
			return nil, errors.New("probe: a call-me-maybe carries no observed address")
		}
		if len(m.Candidates) > MaxCandidates {
			return nil, fmt.Errorf("probe: %d candidates, at most %d", len(m.Candidates), MaxCandidates)
		}
		b = append(b, byte(len(m.Candidates)))
		for _, c := range m.Candidates {
			if err := checkEndpoint(c); err != nil {
				return nil, fmt.Errorf("probe: candidate %v: %w", c, err)
			}
			b = appendEndpoint(b, c)
		}
	case Handshake:
		if m.Observed.IsValid() || len(m.Candidates) > 0 {
			return nil, errors.New("probe: a handshake request carries no address")
		}
		b = append(b, 0)
	default:
		return nil, fmt.Errorf("probe: unknown kind %d", m.Kind)
	}
	return b, nil
}

// decode parses a plaintext strictly and returns the message and when it was
// sealed (unix nanoseconds).
func decode(b []byte) (Message, int64, error) {
	m, err := decodeMessage(b)
	if err != nil {
		return Message{}, 0, err
	}
	return m, int64(binary.BigEndian.Uint64(b[1:])), nil
}

func decodeMessage(b []byte) (Message, error) {
	var m Message
	if len(b) < minPlain {
		return m, fmt.Errorf("%w: short message", ErrMalformed)
	}
	m.Kind = Kind(b[0])
	copy(m.TxID[:], b[1+timeLen:minPlain])
	body := b[minPlain:]
	switch m.Kind {
	case Ping:
		if len(body) != pingPadding {
			return Message{}, fmt.Errorf("%w: ping body of %d bytes", ErrMalformed, len(body))
		}
		for _, c := range body {
			if c != 0 {
				return Message{}, fmt.Errorf("%w: ping padding not zero", ErrMalformed)
			}
		}
	case Pong:
		ep, rest, err := readEndpoint(body)
		if err != nil {
			return Message{}, err
		}
		if len(rest) != 0 {
			return Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
		}
		m.Observed = ep
	case CallMeMaybe:
		if len(body) < 1 {
			return Message{}, fmt.Errorf("%w: call-me-maybe without count", ErrMalformed)
		}
		n := int(body[0])
		if n > MaxCandidates {
			return Message{}, fmt.Errorf("%w: %d candidates, at most %d", ErrMalformed, n, MaxCandidates)
		}
		rest := body[1:]
		if n > 0 {
			m.Candidates = make([]netip.AddrPort, 0, n)
		}
		for range n {
			var ep netip.AddrPort
			var err error
			ep, rest, err = readEndpoint(rest)
			if err != nil {
				return Message{}, err
			}
			m.Candidates = append(m.Candidates, ep)
		}
		if len(rest) != 0 {
			return Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
		}
	case Handshake:
		if len(body) != 1 || body[0] != 0 {
			return Message{}, fmt.Errorf("%w: handshake request body of %d bytes", ErrMalformed, len(body))
		}
	default:
		return Message{}, fmt.Errorf("%w: unknown kind %d", ErrMalformed, b[0])
	}
	return m, nil
}

// checkEndpoint accepts what can be the source or destination of a UDP
// packet on the underlay.
func checkEndpoint(ap netip.AddrPort) error {
	a := ap.Addr()
	switch {
	case !ap.IsValid():
		return errors.New("invalid address")
	case a.Zone() != "":
		return errors.New("address with zone")
	case a.IsUnspecified() || a.IsMulticast():
		return errors.New("not a unicast address")
	case ap.Port() == 0:
		return errors.New("port 0")
	}
	return nil
}

func appendEndpoint(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	if a.Is4() {
		b = append(b, 4)
		v := a.As4()
		b = append(b, v[:]...)
	} else {
		b = append(b, 6)
		v := a.As16()
		b = append(b, v[:]...)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func readEndpoint(b []byte) (netip.AddrPort, []byte, error) {
	if len(b) < 1 {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: missing endpoint", ErrMalformed)
	}
	var a netip.Addr
	var n int
	switch b[0] {
	case 4:
		n = endpoint4
		if len(b) < n {
			return netip.AddrPort{}, nil, fmt.Errorf("%w: short IPv4 endpoint", ErrMalformed)
		}
		a = netip.AddrFrom4([4]byte(b[1:5]))
	case 6:
		n = endpoint6
		if len(b) < n {
			return netip.AddrPort{}, nil, fmt.Errorf("%w: short IPv6 endpoint", ErrMalformed)
		}
		a = netip.AddrFrom16([16]byte(b[1:17]))
	default:
		return netip.AddrPort{}, nil, fmt.Errorf("%w: address family %d", ErrMalformed, b[0])
	}
	ap := netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[n-2:n]))
	if err := checkEndpoint(ap); err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: endpoint %v: %v", ErrMalformed, ap, err)
	}
	return ap, b[n:], nil
}
