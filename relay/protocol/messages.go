package protocol

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// ParsePacket splits a SendPacket or RecvPacket payload into the peer's key
// and the datagram, which aliases p. An empty datagram is malformed: it
// would cost the relay work for nothing.
func ParsePacket(p []byte) (wgtypes.Key, []byte, error) {
	if len(p) <= KeyLen {
		return wgtypes.Key{}, nil, fmt.Errorf("packet frame of %d bytes: %w", len(p), ErrMalformed)
	}
	return wgtypes.Key(p[:KeyLen]), p[KeyLen:], nil
}

// ParseKey decodes a payload that is exactly one key (PeerGone).
func ParseKey(p []byte) (wgtypes.Key, error) {
	if len(p) != KeyLen {
		return wgtypes.Key{}, fmt.Errorf("key frame of %d bytes: %w", len(p), ErrMalformed)
	}
	return wgtypes.Key(p), nil
}

// Bounds of the idle timeout a relay announces in ServerAuthOK. A client
// derives its keepalive interval and its own read timeout from it, so it
// clamps what it is told into this range: a hostile or broken relay must
// make it neither send a KeepAlive every millisecond (MinIdleTimeout) nor
// wait weeks to notice the relay is gone (MaxIdleTimeout). wirelace-relay
// refuses an --idle-timeout outside the range, so a real relay never
// announces one its clients would not follow.
const (
	MinIdleTimeout = 5 * time.Second
	MaxIdleTimeout = 5 * time.Minute
)

// authOKLen is the ServerAuthOK payload this version writes. Readers accept
// longer payloads so that later versions can append fields.
const authOKLen = 4

// AppendAuthOK appends a ServerAuthOK payload: the server's idle timeout in
// milliseconds, so the client can choose its keepalive interval to match.
func AppendAuthOK(b []byte, idleTimeout time.Duration) []byte {
	ms := min(idleTimeout.Milliseconds(), int64(^uint32(0)))
	return binary.BigEndian.AppendUint32(b, uint32(max(ms, 0)))
}

// ParseAuthOK returns the server's idle timeout from a ServerAuthOK payload.
func ParseAuthOK(p []byte) (time.Duration, error) {
	if len(p) < authOKLen {
		return 0, fmt.Errorf("ServerAuthOK of %d bytes: %w", len(p), ErrMalformed)
	}
	return time.Duration(binary.BigEndian.Uint32(p)) * time.Millisecond, nil
}

// AppendReason appends a ServerAuthError or ServerClose payload, cut to
// MaxReasonLen on a rune boundary.
func AppendReason(b []byte, reason string) []byte {
	if len(reason) > MaxReasonLen {
		cut := MaxReasonLen
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	return append(b, reason...)
}

// ParseReason decodes a ServerAuthError or ServerClose payload. The text
// comes from the network and ends up in logs, so anything that is not
// printable UTF-8 is replaced: C0 and C1 controls (U+009B is a terminal's
// CSI as surely as ESC [ is), bidirectional overrides that make a log line
// read other than it is, invalid bytes.
func ParseReason(p []byte) string {
	if len(p) > MaxReasonLen {
		p = p[:MaxReasonLen]
	}
	out := make([]rune, 0, len(p))
	for _, r := range string(p) {
		if r == utf8.RuneError || (r != ' ' && !unicode.IsPrint(r)) {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}
