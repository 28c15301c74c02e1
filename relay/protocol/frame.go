package protocol

import (
	"errors"
	"fmt"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Type says what a frame's payload holds.
type Type byte

// Frame types. The values are part of the wire format: never renumber them.
const (
	TypeServerHello     Type = 0x01
	TypeClientAuth      Type = 0x02
	TypeServerAuthOK    Type = 0x03
	TypeServerAuthError Type = 0x04
	TypeSendPacket      Type = 0x05
	TypeRecvPacket      Type = 0x06
	TypeKeepAlive       Type = 0x07
	TypePeerGone        Type = 0x08
	TypeServerClose     Type = 0x09
)

func (t Type) String() string {
	switch t {
	case TypeServerHello:
		return "ServerHello"
	case TypeClientAuth:
		return "ClientAuth"
	case TypeServerAuthOK:
		return "ServerAuthOK"
	case TypeServerAuthError:
		return "ServerAuthError"
	case TypeSendPacket:
		return "SendPacket"
	case TypeRecvPacket:
		return "RecvPacket"
	case TypeKeepAlive:
		return "KeepAlive"
	case TypePeerGone:
		return "PeerGone"
	case TypeServerClose:
		return "ServerClose"
	}
	return fmt.Sprintf("Type(%#02x)", byte(t))
}

// Sizes and limits of the wire format.
const (
	// HeaderLen is the type byte plus the 4-byte payload length.
	HeaderLen = 5
	// KeyLen is the length of a curve25519 key on the wire.
	KeyLen = wgtypes.KeyLen
	// MaxPacketLen is the largest WireGuard datagram the relay carries: the
	// largest UDP payload. GSO super-packets are split before they get here.
	MaxPacketLen = 65535
	// MaxPayloadLen is the largest payload of any frame: a packet frame's
	// key plus a maximum datagram.
	MaxPayloadLen = KeyLen + MaxPacketLen
	// MaxFrameLen is the largest frame on the wire, header included. Rate
	// limiter bursts must be at least this, or a maximum frame could never
	// pass.
	MaxFrameLen = HeaderLen + MaxPayloadLen
	// MaxHandshakePayloadLen bounds frames before authentication, so an
	// unauthenticated peer cannot make the server buffer a maximum frame.
	MaxHandshakePayloadLen = 512
	// MaxReasonLen bounds the human-readable reason in ServerAuthError and
	// ServerClose.
	MaxReasonLen = 256
)

// Errors a Reader or a parse function returns. Any of them means the peer
// does not speak this protocol (or is hostile): close the connection.
var (
	// ErrFrameTooLarge is a frame whose declared length exceeds the limit.
	ErrFrameTooLarge = errors.New("frame exceeds the maximum size")
	// ErrMalformed is a frame whose payload does not fit its type.
	ErrMalformed = errors.New("malformed frame")
)
