package node

import (
	"fmt"
	"os"
)

// enableForwarding turns on what the node needs to route between lace0, the
// pod veths and the underlay.
func enableForwarding() error {
	for _, path := range []string{
		"/proc/sys/net/ipv4/ip_forward",
		"/proc/sys/net/ipv6/conf/all/forwarding",
	} {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && b[0] == '1' {
			continue
		}
		if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enable forwarding (%s): %w", path, err)
		}
	}
	return nil
}
