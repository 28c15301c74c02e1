package podnet

import (
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// Teardown removes the attachment's veth pair, found by its host-side name;
// the host routes and the pod end go with it. Nothing there is not an
// error: DEL must succeed for what is already gone. A link with that name
// that is not a veth is not Wirelace's and is left alone.
func Teardown(containerID, ifName string) error {
	name := HostVethName(containerID, ifName)
	link, err := netlinksafe.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("look up host veth %s: %w", name, err)
	}
	if _, ok := link.(*netlink.Veth); !ok {
		return nil
	}
	if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete host veth %s: %w", name, err)
	}
	return nil
}

// RemoveHostVeths deletes every Wirelace host veth (a veth whose name has
// HostVethName's shape) for which keep returns false, and returns the names
// it deleted. It goes on after an error and returns the first.
func RemoveHostVeths(keep func(name string) bool) ([]string, error) {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var removed []string
	var firstErr error
	for _, l := range links {
		name := l.Attrs().Name
		if _, ok := l.(*netlink.Veth); !ok || !IsHostVethName(name) || keep(name) {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			if firstErr == nil {
				firstErr = fmt.Errorf("delete stale host veth %s: %w", name, err)
			}
			continue
		}
		removed = append(removed, name)
	}
	return removed, firstErr
}
