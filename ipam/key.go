package ipam

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Key names one network attachment of a container: the CNI container ID and
// interface name. It has the same fields as netconf.AttachmentKey, so the
// two convert directly.
type Key struct {
	ContainerID string
	IfName      string
}

// String returns the key as stored in the database: "containerID/ifName".
// Interface names cannot contain '/', so the form is unambiguous.
func (k Key) String() string { return k.ContainerID + "/" + k.IfName }

func (k Key) dbKey() []byte { return []byte(k.String()) }

func (k Key) validate() error {
	switch {
	case k.ContainerID == "":
		return fmt.Errorf("%w: empty container ID", ErrInvalidKey)
	case k.IfName == "":
		return fmt.Errorf("%w: empty interface name", ErrInvalidKey)
	case strings.Contains(k.IfName, "/"):
		return fmt.Errorf("%w: interface name %q contains '/'", ErrInvalidKey, k.IfName)
	}
	return nil
}

// Owner is who an allocation was made for. It is recorded, not enforced: the
// daemon uses it to reconcile allocations against the pods on the node.
type Owner struct {
	// Network is the CNI network the attachment belongs to: a GC from one
	// network never releases another's allocations.
	Network      string
	Netns        string
	PodNamespace string
	PodName      string
	PodUID       string
}

// Allocation is the addresses held by one attachment.
type Allocation struct {
	Key
	Owner
	// IPs holds one address per pod CIDR the node had when the allocation
	// was made, in the order of the ranges, each with its range's prefix
	// length (e.g. 10.244.1.7/24).
	IPs     []netip.Prefix
	Created time.Time
}
