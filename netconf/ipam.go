package netconf

// Local API paths for pod networking. The plugins hold no state: every
// allocation lives in the daemon, so these calls are the whole contract.
const (
	// IPAMAllocatePath: POST AllocateRequest → AllocateResponse. Idempotent
	// per (ContainerID, IfName): a repeated call returns the same addresses.
	IPAMAllocatePath = "/v1/ipam/allocate"
	// IPAMReleasePath: POST ReleaseRequest → 204. Releasing what is not
	// allocated succeeds (a CNI DEL must never fail for "already gone").
	IPAMReleasePath = "/v1/ipam/release"
	// IPAMGCPath: POST GCRequest → GCResponse. Releases every allocation not
	// named in Valid.
	IPAMGCPath = "/v1/ipam/gc"
	// IPAMListPath: GET → ListResponse, every allocation on this node.
	IPAMListPath = "/v1/ipam/allocations"
)

// AttachmentKey names one network attachment of a container: the key of an
// allocation.
type AttachmentKey struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

// AllocateRequest asks for one address per pod CIDR family of the node.
type AllocateRequest struct {
	// Network is the CNI network name; GC is scoped to it.
	Network string `json:"network,omitempty"`
	AttachmentKey
	// Netns and the pod identity (from CNI_ARGS K8S_POD_*) are recorded so
	// the daemon can reconcile allocations against the pods on the node.
	Netns        string `json:"netns,omitempty"`
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
	PodUID       string `json:"podUID,omitempty"`
}

// AllocatedIP is one address in CIDR notation with the pod CIDR's prefix
// length (e.g. 10.244.1.7/24), and the range's gateway (its first address),
// for plugins such as bridge and ptp that route through a gateway.
type AllocatedIP struct {
	Address string `json:"address"`
	Gateway string `json:"gateway,omitempty"`
}

// AllocateResponse is the allocation and what the pod interface needs.
type AllocateResponse struct {
	IPs []AllocatedIP `json:"ips"`
	// MTU is the MTU pods must use so their packets fit the tunnel.
	MTU int `json:"mtu"`
}

// ReleaseRequest frees one attachment's addresses.
type ReleaseRequest struct {
	AttachmentKey
}

// GCRequest lists the attachments of Network that are still valid; other
// networks' allocations are kept.
type GCRequest struct {
	Network string          `json:"network,omitempty"`
	Valid   []AttachmentKey `json:"valid"`
}

// GCResponse says what was released.
type GCResponse struct {
	Released []AttachmentKey `json:"released"`
}

// Allocation is one stored allocation.
type Allocation struct {
	AttachmentKey
	IPs          []string `json:"ips"`
	Network      string   `json:"network,omitempty"`
	Netns        string   `json:"netns,omitempty"`
	PodNamespace string   `json:"podNamespace,omitempty"`
	PodName      string   `json:"podName,omitempty"`
	PodUID       string   `json:"podUID,omitempty"`
	Created      string   `json:"created"`
}

// ListResponse is every allocation on the node.
type ListResponse struct {
	Allocations []Allocation `json:"allocations"`
}
