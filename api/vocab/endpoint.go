package vocab

// EndpointKind says where an endpoint candidate came from, which decides how
// much a peer may trust it to be reachable from elsewhere, and how a direct
// path through it ranks against others.
type EndpointKind string

// The kinds a node publishes in its MeshNode.
const (
	// EndpointHost is an address of one of the node's own interfaces.
	EndpointHost EndpointKind = "host"
	// EndpointSTUN is the node's address as a STUN server saw it
	// (server-reflexive).
	EndpointSTUN EndpointKind = "stun"
	// EndpointConfigured is set by the operator, e.g. a port-forward on a
	// site router.
	EndpointConfigured EndpointKind = "configured"
)

// EndpointObserved is an address learnt from the network at run time (a
// pong's source, or an address the peer's packets came from). It is never
// published, so it is not one of PublishedEndpointKinds.
const EndpointObserved EndpointKind = "observed"

// PublishedEndpointKinds lists the kinds a MeshNode may carry (the CRD's
// enum).
func PublishedEndpointKinds() []EndpointKind {
	return []EndpointKind{EndpointHost, EndpointSTUN, EndpointConfigured}
}
