// Package sysctl sets kernel parameters under /proc/sys for the CNI plugin
// and wirelaced alike, over containernetworking's pkg/utils/sysctl (which
// needs nothing but the standard library, so the daemon takes in no CNI
// code with it).
package sysctl

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	cnisysctl "github.com/containernetworking/plugins/pkg/utils/sysctl"
)

// The parameters that make the host route each address family.
const (
	IPv4Forwarding = "net/ipv4/ip_forward"
	IPv6Forwarding = "net/ipv6/conf/all/forwarding"
)

// Error is a parameter that could not be set.
type Error struct {
	// Name is the parameter as sysctl(8) writes it: net.ipv4.ip_forward.
	Name  string
	Value string
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("set %s=%s: %v", e.Name, e.Value, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// Denied says whether the kernel refused the write because this process
// may not change the parameter: /proc/sys is read-only in a container
// without privileges, and writing needs CAP_NET_ADMIN in the netns.
func (e *Error) Denied() bool {
	return errors.Is(e.Err, syscall.EROFS) || errors.Is(e.Err, syscall.EACCES) || errors.Is(e.Err, syscall.EPERM)
}

// Set writes value to the parameter name, given with slashes as under
// /proc/sys (so that an interface name with a dot in it stays whole),
// unless it already holds value. A repeated call writes nothing, and a
// parameter that is already right needs no privilege to "set".
func Set(name, value string) error {
	if cur, err := cnisysctl.Sysctl(name); err == nil && strings.TrimSpace(cur) == value {
		return nil
	}
	if _, err := cnisysctl.Sysctl(name, value); err != nil {
		return &Error{Name: strings.ReplaceAll(name, "/", "."), Value: value, Err: err}
	}
	return nil
}

// EnableForwarding turns on forwarding for the families asked for and
// leaves the other as it is: a node that does not route a family must not
// fail for want of the privilege to change it.
func EnableForwarding(v4, v6 bool) error {
	if v4 {
		if err := Set(IPv4Forwarding, "1"); err != nil {
			return err
		}
	}
	if v6 {
		if err := Set(IPv6Forwarding, "1"); err != nil {
			return err
		}
	}
	return nil
}
