package bind

import (
	"encoding/binary"

	"golang.zx2c4.com/wireguard/device"
)

// IsWireGuard reports whether pkt is a WireGuard message that wireguard-go would
// accept: a 4-byte little-endian type 1..4 (so bytes 1..3 are zero) and the size
// that type requires. The handshake messages have fixed sizes; a transport
// message is at least a keepalive.
//
// Everything else that shares the socket must never look like that. STUN
// cannot: its bytes 2..3 are the body length, so to start with {1..4, 0, 0, 0} a
// STUN message must have an empty body, which makes it 20 bytes, shorter than
// any WireGuard message. Our own probes start with a magic whose first byte is
// not 1..4. A packet with a WireGuard type but the wrong size is not WireGuard:
// the device would drop it, so it goes to the handler, which will not recognise
// it either.
func IsWireGuard(pkt []byte) bool {
	if len(pkt) < 4 {
		return false
	}
	switch binary.LittleEndian.Uint32(pkt) {
	case device.MessageInitiationType:
		return len(pkt) == device.MessageInitiationSize
	case device.MessageResponseType:
		return len(pkt) == device.MessageResponseSize
	case device.MessageCookieReplyType:
		return len(pkt) == device.MessageCookieReplySize
	case device.MessageTransportType:
		return len(pkt) >= device.MessageTransportSize
	default:
		return false
	}
}
