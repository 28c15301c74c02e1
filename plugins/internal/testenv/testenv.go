// Package testenv sets up what the plugins' tests run against: plugin
// binaries built into a directory, and throwaway network namespaces for the
// "host" and the pods, so that no test touches the real host's network.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wirelace/wirelace/internal/netnstest"
	"github.com/wirelace/wirelace/internal/roottest"
)

// Plugin packages.
const (
	Wirelace     = "github.com/wirelace/wirelace/plugins/wirelace"
	WirelaceIPAM = "github.com/wirelace/wirelace/plugins/wirelace-ipam"
	// PTP is the reference ptp plugin, to run wirelace-ipam under.
	PTP = "github.com/containernetworking/plugins/plugins/main/ptp"
)

// Build builds the commands pkgs into dir.
func Build(dir string, pkgs ...string) error {
	args := append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)
	cmd := exec.Command("go", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %v: %v\n%s", pkgs, err, out)
	}
	return nil
}

// RequireRoot fails a test that needs to create network namespaces when
// not run as root (see internal/roottest).
func RequireRoot(t testing.TB) {
	t.Helper()
	roottest.Require(t, "network namespaces")
}

// NetNS is a fresh network namespace with lo up, removed when the test ends.
func NetNS(t testing.TB) ns.NetNS {
	t.Helper()
	n := netnstest.New(t)
	Do(t, n, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	return n
}

// Host addresses of HostNS's uplink and its default gateways.
const (
	HostIPv4 = "192.0.2.10"
	HostIPv6 = "2001:db8::10"
)

// HostNS is a network namespace that stands for a node: lo, an "uplink"
// with an IPv4 and an IPv6 address, and default routes through
// it, as a real node has.
func HostNS(t testing.TB) ns.NetNS {
	t.Helper()
	n := NetNS(t)
	Do(t, n, func() error {
		// A veth pair rather than a dummy, which some kernels lack; both
		// ends up, so the uplink has carrier.
		attrs := netlink.NewLinkAttrs()
		attrs.Name = "uplink"
		up := &netlink.Veth{LinkAttrs: attrs, PeerName: "uplink-peer"}
		if err := netlink.LinkAdd(up); err != nil {
			return fmt.Errorf("add uplink: %w", err)
		}
		for _, name := range []string{"uplink", "uplink-peer"} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
		}
		for _, a := range []string{HostIPv4 + "/24", HostIPv6 + "/64"} {
			ip, ipn, _ := net.ParseCIDR(a)
			ipn.IP = ip
			if err := netlink.AddrAdd(up, &netlink.Addr{IPNet: ipn, Flags: unix.IFA_F_NODAD}); err != nil {
				return fmt.Errorf("add %s: %w", a, err)
			}
		}
		for _, gw := range []string{"192.0.2.1", "2001:db8::1"} {
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
				return fmt.Errorf("default via %s: %w", gw, err)
			}
		}
		return nil
	})
	return n
}

// Do runs f in netns n and fails the test on error.
func Do(t testing.TB, n ns.NetNS, f func() error) {
	t.Helper()
	if err := n.Do(func(ns.NetNS) error { return f() }); err != nil {
		t.Fatalf("in netns %s: %v", n.Path(), err)
	}
}

// WriteFile writes data to dir/name and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// AddBridge adds an empty bridge named name to the current netns and sets it
// up: a link that is not a veth, for tests (some kernels lack dummy).
func AddBridge(name string) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	br := &netlink.Bridge{LinkAttrs: attrs}
	if err := netlink.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("add bridge %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, err
	}
	return netlink.LinkByName(name)
}
