package node

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/wirelace/wirelace/internal/sysctl"
)

// enableForwarding turns on forwarding for the address families the node
// routes (those of its pod CIDRs and mesh IPs), between lace0, the pod
// veths and the underlay. A family the mesh does not use is left as it is:
// in a container without privileges /proc/sys is read-only, and asking
// for more than is needed would stop an IPv4-only node for nothing.
func enableForwarding(prefixes []netip.Prefix) error {
	var v4, v6 bool
	for _, p := range prefixes {
		v4 = v4 || p.Addr().Unmap().Is4()
		v6 = v6 || !p.Addr().Unmap().Is4()
	}
	err := sysctl.EnableForwarding(v4, v6)
	var se *sysctl.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && se.Denied():
		return fmt.Errorf("%s is off and this container may not change it: set %s=1 on the node (sysctl.d), or run wirelaced privileged", se.Name, se.Name)
	case errors.As(err, &se):
		return fmt.Errorf("enable forwarding (%s): %w", se.Name, se.Err)
	default:
		return fmt.Errorf("enable forwarding: %w", err)
	}
}
