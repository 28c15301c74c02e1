package bind

import (
	"encoding/binary"
	"testing"
)

// msg returns a packet of size bytes whose first four bytes are the
// little-endian word typ.
func msg(typ uint32, size int) []byte {
	b := make([]byte, size)
	if size >= 4 {
		binary.LittleEndian.PutUint32(b, typ)
	}
	return b
}

// stun returns a STUN header (20 bytes) with the given type and body length,
// followed by that many body bytes.
func stun(typ uint16, bodyLen int) []byte {
	b := make([]byte, 20+bodyLen)
	binary.BigEndian.PutUint16(b[0:], typ)
	binary.BigEndian.PutUint16(b[2:], uint16(bodyLen))
	binary.BigEndian.PutUint32(b[4:], 0x2112A442)
	return b
}

func TestIsWireGuard(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"initiation", msg(1, 148), true},
		{"initiation wrong size", msg(1, 147), false},
		{"response", msg(2, 92), true},
		{"response wrong size", msg(2, 93), false},
		{"cookie reply", msg(3, 64), true},
		{"cookie reply wrong size", msg(3, 63), false},
		{"keepalive", msg(4, 32), true},
		{"transport", msg(4, 1452), true},
		{"transport too short", msg(4, 31), false},
		{"type 0", msg(0, 148), false},
		{"type 5", msg(5, 148), false},
		{"upper bytes set", msg(1|1<<8, 148), false},
		{"upper byte 3 set", msg(4|1<<24, 100), false},
		{"empty", nil, false},
		{"three bytes", []byte{4, 0, 0}, false},
		{"stun binding request", stun(0x0001, 0), false},
		{"stun binding request with attributes", stun(0x0001, 8), false},
		{"stun binding success", stun(0x0101, 12), false},
		{"stun 0x0100 empty body", stun(0x0100, 0), false},
		{"stun 0x0400 empty body", stun(0x0400, 0), false},
		{"probe magic", append([]byte("wlp1"), make([]byte, 60)...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsWireGuard(tt.pkt); got != tt.want {
				t.Errorf("IsWireGuard(% x...) = %v, want %v", head(tt.pkt), got, tt.want)
			}
		})
	}
}

func head(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}
