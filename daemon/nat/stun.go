package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/stun/v3"

	"github.com/wirelace/wirelace/internal/stunattr"
)

const (
	stunHeaderSize = 20
	stunCookie     = 0x2112A442
	txIDOffset     = 8 // the transaction ID is header bytes 8..19
)

// IsSTUN reports whether pkt looks like a STUN message: a full header whose
// first two bits are zero and which carries the magic cookie (RFC 5389
// section 6). It does not decode anything, so it is cheap enough for the
// receive path.
func IsSTUN(pkt []byte) bool {
	return len(pkt) >= stunHeaderSize &&
		pkt[0]&0xC0 == 0 &&
		binary.BigEndian.Uint32(pkt[4:8]) == stunCookie
}

// isBindingResponse reports whether the header of a STUN message (IsSTUN
// already true) is a Binding success or error response: the only messages a
// client is answered with.
func isBindingResponse(pkt []byte) bool {
	t := binary.BigEndian.Uint16(pkt[0:2])
	return t == stun.BindingSuccess.Value() || t == stun.BindingError.Value()
}

type txID = [stun.TransactionIDSize]byte

// change is what a request asks the server to change in the address it
// answers from (RFC 5780 CHANGE-REQUEST); the zero value asks nothing.
type change struct {
	ip, port bool
}

func (c change) any() bool { return c.ip || c.port }

func (c change) String() string {
	switch {
	case c.ip && c.port:
		return "change IP and port"
	case c.ip:
		return "change IP"
	case c.port:
		return "change port"
	}
	return "no change"
}

// AddTo adds CHANGE-REQUEST to m, or nothing for the zero change (an
// unneeded comprehension-required attribute would make servers without
// RFC 5780 refuse the request with 420).
func (c change) AddTo(m *stun.Message) error {
	if !c.any() {
		return nil
	}
	// One codec for the attribute, the STUN server's.
	return stunattr.ChangeRequest{ChangeIP: c.ip, ChangePort: c.port}.AddTo(m)
}

// bindingRequest encodes a Binding request with transaction id. A
// FINGERPRINT makes the request unmistakable for anything else on a shared
// port (RFC 5389 section 8), and servers echo it in the answer.
func bindingRequest(id txID, c change) ([]byte, error) {
	m, err := stun.Build(stun.NewTransactionIDSetter(id), stun.BindingRequest, c, stun.Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("build STUN binding request: %w", err)
	}
	return m.Raw, nil
}

// reply is what a Binding response told us.
type reply struct {
	from    netip.AddrPort // where the datagram came from
	errCode int            // STUN error code, 0 for a success response
	mapped  netip.AddrPort // XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS
	other   netip.AddrPort // OTHER-ADDRESS (RFC 5780), if any
	origin  netip.AddrPort // RESPONSE-ORIGIN (RFC 5780), if any
}

func (r reply) ok() bool { return r.errCode == 0 }

// parseReply decodes a Binding response. It copies what it keeps, so pkt may
// be reused afterwards.
func parseReply(pkt []byte, from netip.AddrPort) (reply, error) {
	m := &stun.Message{Raw: append([]byte(nil), pkt...)}
	if err := m.Decode(); err != nil {
		return reply{}, fmt.Errorf("decode STUN message from %s: %w", from, err)
	}
	if m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(m); err != nil {
			return reply{}, fmt.Errorf("STUN message from %s: %w", from, err)
		}
	}
	r := reply{from: from}
	if m.Type == stun.BindingError {
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(m); err != nil {
			return reply{}, fmt.Errorf("STUN error response from %s without a usable ERROR-CODE: %w", from, err)
		}
		r.errCode = int(ec.Code)
		if r.errCode == 0 {
			r.errCode = -1 // an error response, whatever its code says
		}
		return r, nil
	}

	var xor stun.XORMappedAddress
	if err := xor.GetFrom(m); err == nil {
		r.mapped = addrPort(xor.IP, xor.Port)
	} else {
		// RFC 3489 servers only send MAPPED-ADDRESS.
		var ma stun.MappedAddress
		if err2 := ma.GetFrom(m); err2 != nil {
			return reply{}, fmt.Errorf("STUN success response from %s without a mapped address: %w", from, errors.Join(err, err2))
		}
		r.mapped = addrPort(ma.IP, ma.Port)
	}
	if !r.mapped.IsValid() || r.mapped.Port() == 0 {
		return reply{}, fmt.Errorf("STUN response from %s maps to unusable address %s", from, r.mapped)
	}
	var oa stun.OtherAddress
	if err := oa.GetFrom(m); err == nil {
		r.other = addrPort(oa.IP, oa.Port)
	}
	var ro stun.ResponseOrigin
	if err := ro.GetFrom(m); err == nil {
		r.origin = addrPort(ro.IP, ro.Port)
	}
	return r, nil
}

// addrPort converts a decoded STUN address, IPv4 in its 4-byte form so that
// it compares equal to addresses parsed elsewhere. Invalid input gives the
// zero AddrPort.
func addrPort(ip net.IP, port int) netip.AddrPort {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port <= 0 || port > 0xFFFF {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}
