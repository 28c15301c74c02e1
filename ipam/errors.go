package ipam

import "errors"

var (
	// ErrNoRanges means the node's pod CIDRs are not known yet (the daemon
	// has not seen its Node's podCIDRs). It is temporary: the CNI plugin
	// should tell the runtime to try again later.
	ErrNoRanges = errors.New("no pod CIDRs set for this node yet")

	// ErrExhausted means every usable address of a pod CIDR is allocated. It
	// is returned wrapped with the range.
	ErrExhausted = errors.New("no free address left")

	// ErrInvalidKey means an allocation key cannot be stored: an empty
	// container ID or interface name, or a '/' in the interface name.
	ErrInvalidKey = errors.New("invalid allocation key")

	// ErrLocked means another process (normally another wirelaced) holds
	// the database open.
	ErrLocked = errors.New("locked by another process")
)
