package nat

import (
	"net/netip"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// Sender sends one datagram from the node's WireGuard socket (daemon/bind's
// Bind.SendTo).
type Sender interface {
	SendTo(pkt []byte, to netip.AddrPort) error
}

// Type is a NAT behaviour as published in MeshNode.spec.natType.
type Type = v1alpha1.NATType

// The types, under this package's names (see v1alpha1 for what each means).
const (
	Open               = v1alpha1.NATOpen
	ConeFull           = v1alpha1.NATCone
	ConeRestricted     = v1alpha1.NATConeRestricted
	ConePortRestricted = v1alpha1.NATConePortRestricted
	Symmetric          = v1alpha1.NATSymmetric
	UDPBlocked         = v1alpha1.NATUDPBlocked
	Unknown            = v1alpha1.NATUnknown
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
