package node

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
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
	for _, f := range []struct {
		on         bool
		path, name string
	}{
		{v4, "/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward"},
		{v6, "/proc/sys/net/ipv6/conf/all/forwarding", "net.ipv6.conf.all.forwarding"},
	} {
		if !f.on {
			continue
		}
		if b, err := os.ReadFile(f.path); err == nil && len(b) > 0 && b[0] == '1' {
			continue
		}
		err := os.WriteFile(f.path, []byte("1"), 0o644)
		switch {
		case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return fmt.Errorf("%s is off and this container may not change it: set %s=1 on the node (sysctl.d), or run wirelaced privileged", f.name, f.name)
		case err != nil:
			return fmt.Errorf("enable forwarding (%s): %w", f.name, err)
		}
	}
	return nil
}
