package device

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const cloneDevicePath = "/dev/net/tun"

// tunFlags are the flags of wireguard-go's tun.CreateTUN. IFF_VNET_HDR is what
// turns on its GSO/GRO. A persistent TUN can be re-attached with these flags
// whatever it was created with, as long as it is a single-queue TUN: the kernel
// then replaces its feature flags (IFF_NO_PI, IFF_VNET_HDR) with ours.
const tunFlags = unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// openTUN attaches to the TUN named name, creating it if absent, and marks it
// persistent so that the link, its addresses and its routes outlive this
// process. It is tun.CreateTUN's first half, done here because CreateTUN leaks
// the descriptor when it fails and hides which step failed; the returned file is
// meant for tun.CreateTUNFromFile.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open(cloneDevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cloneDevicePath, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("interface name %q: %w", name, err)
	}
	ifr.SetUint16(tunFlags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EBUSY) {
			// A single-queue TUN accepts one file at a time.
			return nil, fmt.Errorf("attach to TUN %q: %w (another process holds it; is a second wirelaced running?)", name, err)
		}
		return nil, fmt.Errorf("attach to TUN %q: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make TUN %q persistent: %w", name, err)
	}
	// Non-blocking before os.NewFile, so that the Go runtime polls it (as in
	// tun.CreateTUN).
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set TUN %q non-blocking: %w", name, err)
	}
	return os.NewFile(uintptr(fd), cloneDevicePath), nil
}

// existingTUN returns the link named name if there is one, or nil if there is
// none. A link of that name that wireguard-go cannot use is an error: it belongs
// to someone else, and taking it over (or deleting it) would break them.
func existingTUN(name string) (netlink.Link, error) {
	link, err := netlink.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up link %q: %w", name, err)
	}
	tt, ok := link.(*netlink.Tuntap)
	if !ok {
		return nil, fmt.Errorf("link %q exists and is a %s device, not a TUN; refusing to take it over", name, link.Type())
	}
	if tt.Mode != netlink.TUNTAP_MODE_TUN {
		return nil, fmt.Errorf("link %q exists and is a TAP device, not a TUN; refusing to take it over", name)
	}
	if tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 {
		return nil, fmt.Errorf("link %q exists and is a multi-queue TUN, which wireguard-go cannot attach to", name)
	}
	return link, nil
}
