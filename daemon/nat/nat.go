package nat

import "net/netip"

// Sender sends one datagram from the node's WireGuard socket (daemon/bind's
// Bind.SendTo).
type Sender interface {
	SendTo(pkt []byte, to netip.AddrPort) error
}

// Type is a NAT behaviour as published in MeshNode.spec.natType. The values
// are part of the API: do not rename them.
type Type string

const (
	// Open: the mapped address is one of the node's own addresses, no NAT.
	Open Type = "open"
	// ConeFull: endpoint-independent mapping and filtering.
	ConeFull Type = "cone"
	// ConeRestricted: endpoint-independent mapping, address-dependent
	// filtering.
	ConeRestricted Type = "cone-restricted"
	// ConePortRestricted: endpoint-independent mapping,
	// address-and-port-dependent filtering (the typical home router, and
	// Linux masquerade).
	ConePortRestricted Type = "cone-port-restricted"
	// Symmetric: endpoint-dependent mapping (cloud NAT gateways, masquerade
	// with random ports): the mapped address learnt from STUN is not the one
	// a peer would see.
	Symmetric Type = "symmetric"
	// UDPBlocked: no STUN server answered at all.
	UDPBlocked Type = "udp-blocked"
	// Unknown: some server answered but the behaviour could not be told,
	// e.g. only one server IP answered, or no server supports RFC 5780 so
	// filtering could not be tested.
	Unknown Type = "unknown"
)

// Result is one classification.
type Result struct {
	Type Type
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
