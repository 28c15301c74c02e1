package device

import (
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Config describes the node's WireGuard device.
type Config struct {
	Name       string // link name, e.g. "lace0"
	MTU        int    // e.g. 1420; 0 = wireguard-go's default (1420)
	ListenPort int    // UDP port, e.g. 51820; 0 = random
	PrivateKey wgtypes.Key
	// FwMark is set on the UDP socket (0 = none) so that policy routing can keep
	// WireGuard's own packets off the mesh link.
	FwMark int
	Logger *slog.Logger // nil = slog.Default()
	// FixedEndpoints stops wireguard-go from moving a peer's endpoint to the
	// source of its packets (roaming). wirelaced sets every peer's endpoint
	// to a virtual one and its Bind chooses the path; roaming would replace
	// that choice with whatever address a packet last came from.
	FixedEndpoints bool
}

// withDefaults returns c with defaults filled in, or an error if c cannot work.
// Checking here rather than letting the kernel refuse matters because
// wireguard-go's tun.CreateTUNFromFile leaves goroutines behind when it fails
// late (for instance on an MTU the kernel rejects).
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		return c, errors.New("device name is empty")
	}
	if len(c.Name) >= unix.IFNAMSIZ {
		return c, fmt.Errorf("device name %q is longer than %d bytes", c.Name, unix.IFNAMSIZ-1)
	}
	if c.MTU == 0 {
		c.MTU = device.DefaultMTU
	}
	// 68 is the smallest MTU IPv4 allows; above MaxContentSize a packet no longer
	// fits in one WireGuard message.
	if c.MTU < 68 || c.MTU > device.MaxContentSize {
		return c, fmt.Errorf("MTU %d out of range [68, %d]", c.MTU, device.MaxContentSize)
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return c, fmt.Errorf("listen port %d out of range", c.ListenPort)
	}
	if c.FwMark < 0 || c.FwMark > 1<<32-1 {
		return c, fmt.Errorf("fwmark %d out of range", c.FwMark)
	}
	if c.PrivateKey == (wgtypes.Key{}) {
		return c, errors.New("private key is empty")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
