package netconf

// Local API paths for chained mode: wirelace runs after a primary CNI
// (Cilium, bridge, ptp) that made the pod's interface and gave it its
// addresses. The plugin registers those addresses with the daemon, which
// routes them through the mesh (announcing those outside the node's pod
// CIDRs in its MeshNode) until the attachment is released.
const (
	// ChainedRegisterPath: POST RegisterRequest → RegisterResponse.
	// Idempotent per (Network, ContainerID, IfName): a repeated call
	// replaces the addresses.
	ChainedRegisterPath = "/v1/chained/register"
	// ChainedReleasePath: POST ChainedReleaseRequest → 200. Releasing what
	// is not registered succeeds.
	ChainedReleasePath = "/v1/chained/release"
	// ChainedGCPath: POST ChainedGCRequest → GCResponse. Releases every
	// registration of Network not named in Valid; other networks' are kept.
	ChainedGCPath = "/v1/chained/gc"
	// ChainedListPath: GET → ChainedListResponse.
	ChainedListPath = "/v1/chained"
)

// RegisterRequest registers the addresses a primary CNI gave one
// attachment.
type RegisterRequest struct {
	// Network is the CNI network name: registrations of one network are
	// garbage-collected only by that network's GC.
	Network string `json:"network"`
	AttachmentKey
	// IPs are the pod's addresses, without prefix length.
	IPs          []string `json:"ips"`
	Netns        string   `json:"netns,omitempty"`
	PodNamespace string   `json:"podNamespace,omitempty"`
	PodName      string   `json:"podName,omitempty"`
	PodUID       string   `json:"podUID,omitempty"`
}

// RegisterResponse is what the chained plugin needs to finish ADD in the
// same round trip: the MTU of the tunnel.
type RegisterResponse struct {
	MTU int `json:"mtu"`
}

// ChainedReleaseRequest ends one registration.
type ChainedReleaseRequest struct {
	Network string `json:"network"`
	AttachmentKey
}

// ChainedGCRequest lists the attachments of Network that are still valid.
type ChainedGCRequest struct {
	Network string          `json:"network"`
	Valid   []AttachmentKey `json:"valid"`
}

// Registration is one registered chained attachment: what was registered,
// and when.
type Registration struct {
	RegisterRequest
	Created string `json:"created"`
}

// ChainedListResponse is every registration on the node.
type ChainedListResponse struct {
	Registrations []Registration `json:"registrations"`
}
