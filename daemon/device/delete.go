package device

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Delete removes the persistent link name (on uninstall). It returns nil if
// there is no such link, and refuses to delete a link that is not a TUN.
func Delete(name string) error {
	link, err := existingTUN(name)
	if err != nil {
		return fmt.Errorf("delete wireguard link: %w", err)
	}
	if link == nil {
		return nil
	}
	if err := netlink.LinkDel(link); err != nil {
		if errors.As(err, &netlink.LinkNotFoundError{}) {
			return nil
		}
		return fmt.Errorf("delete link %q: %w", name, err)
	}
	return nil
}
