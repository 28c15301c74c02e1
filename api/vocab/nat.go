package vocab

// NATType is a node's NAT behaviour as its STUN classification found it; the
// value of MeshNode spec.natType. The words are RFC 4787's behaviours, named
// after the classic cone/symmetric types operators know.
type NATType string

// The NAT types.
const (
	// NATOpen: the node's address as seen from outside is its own (no NAT).
	NATOpen NATType = "open"
	// NATCone: endpoint-independent mapping and filtering.
	NATCone NATType = "cone"
	// NATConeRestricted: endpoint-independent mapping, address-dependent
	// filtering.
	NATConeRestricted NATType = "cone-restricted"
	// NATConePortRestricted: endpoint-independent mapping,
	// address-and-port-dependent filtering (the typical home router, and
	// Linux masquerade).
	NATConePortRestricted NATType = "cone-port-restricted"
	// NATSymmetric: endpoint-dependent mapping (cloud NAT gateways).
	NATSymmetric NATType = "symmetric"
	// NATUDPBlocked: no STUN server answered at all.
	NATUDPBlocked NATType = "udp-blocked"
	// NATUnknown: some server answered but the behaviour could not be told.
	NATUnknown NATType = "unknown"
)

// NATTypes lists every NAT type, in the order above (the CRD's enum).
func NATTypes() []NATType {
	return []NATType{NATOpen, NATCone, NATConeRestricted, NATConePortRestricted, NATSymmetric, NATUDPBlocked, NATUnknown}
}
