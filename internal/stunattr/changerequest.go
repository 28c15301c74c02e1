// Package stunattr holds the STUN attributes Wirelace needs that pion/stun
// has no codec for, shared by the STUN server and the daemon's NAT
// classification without either importing the other.
package stunattr

import (
	"encoding/binary"
	"fmt"

	"github.com/pion/stun/v3"
)

// CHANGE-REQUEST flag bits (RFC 5780 section 7.2).
const (
	changeIPFlag   = 0x04
	changePortFlag = 0x02
	changeReqLen   = 4
)

// ChangeRequest is the CHANGE-REQUEST attribute of RFC 5780: the client asks
// for the answer to come from the server's other IP address, other port, or
// both. pion/stun has the attribute type but no codec; this is one, usable
// by clients (wirelaced's NAT classification) as well as by the server.
type ChangeRequest struct {
	ChangeIP   bool
	ChangePort bool
}

// AddTo adds CHANGE-REQUEST to m.
func (c ChangeRequest) AddTo(m *stun.Message) error {
	var v uint32
	if c.ChangeIP {
		v |= changeIPFlag
	}
	if c.ChangePort {
		v |= changePortFlag
	}
	m.Add(stun.AttrChangeRequest, binary.BigEndian.AppendUint32(nil, v))
	return nil
}

// GetFrom decodes CHANGE-REQUEST from m.
func (c *ChangeRequest) GetFrom(m *stun.Message) error {
	v, err := m.Get(stun.AttrChangeRequest)
	if err != nil {
		return err
	}
	if len(v) != changeReqLen {
		return fmt.Errorf("CHANGE-REQUEST of %d bytes, want %d", len(v), changeReqLen)
	}
	flags := binary.BigEndian.Uint32(v)
	c.ChangeIP = flags&changeIPFlag != 0
	c.ChangePort = flags&changePortFlag != 0
	return nil
}
