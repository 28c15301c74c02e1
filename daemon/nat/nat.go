package nat

import (
	"net/netip"

	"github.com/wirelace/wirelace/api/vocab"
)

// Sender sends one datagram from the node's WireGuard socket (daemon/bind's
// Bind.SendTo).
type Sender interface {
	SendTo(pkt []byte, to netip.AddrPort) error
}

// Result is one classification.
type Result struct {
	// Type is what MeshNode spec.natType says.
	Type vocab.NATType
	// Mapped holds the server-reflexive addresses seen, deduplicated, in
	// the order of the servers given to Classify; Mapped[0] is the one to
	// publish as an endpoint candidate.
	Mapped []netip.AddrPort
	// MappingIndependent is true when two server IPs saw the same mapped
	// address (endpoint-independent mapping).
	MappingIndependent bool
	// FilteringTested is true when an RFC 5780 CHANGE-REQUEST test gave an
	// answer to go by.
	FilteringTested bool
	// Reason is one line for an operator saying what was observed.
	Reason string
}
