package sysctl

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/wirelace/wirelace/internal/netnstest"
)

// inNetNS runs f in a fresh network namespace, whose /proc/sys/net is its
// own, so that the test never changes the host's forwarding.
func inNetNS(t *testing.T, f func() error) {
	t.Helper()
	if err := netnstest.New(t).Do(func(ns.NetNS) error { return f() }); err != nil {
		t.Fatal(err)
	}
}

func read(name string) string {
	b, _ := os.ReadFile("/proc/sys/" + name)
	return strings.TrimSpace(string(b))
}

func TestEnableForwardingOnlyTheFamiliesAsked(t *testing.T) {
	inNetNS(t, func() error {
		for _, name := range []string{IPv4Forwarding, IPv6Forwarding} {
			if err := Set(name, "0"); err != nil {
				return err
			}
		}
		if err := EnableForwarding(true, false); err != nil {
			return err
		}
		if v4, v6 := read(IPv4Forwarding), read(IPv6Forwarding); v4 != "1" || v6 != "0" {
			t.Errorf("after EnableForwarding(v4 only): ip_forward=%q, ipv6 forwarding=%q; want 1 and 0", v4, v6)
		}
		if err := EnableForwarding(true, true); err != nil {
			return err
		}
		if v6 := read(IPv6Forwarding); v6 != "1" {
			t.Errorf("after EnableForwarding(both): ipv6 forwarding=%q, want 1", v6)
		}
		return nil
	})
}

func TestSetNamesTheParameter(t *testing.T) {
	err := Set("net/ipv4/conf/no-such-link.0/proxy_arp", "1")
	var se *Error
	if !errors.As(err, &se) || se.Name != "net.ipv4.conf.no-such-link.0.proxy_arp" || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Set on a missing parameter = %v, want an *Error naming it and wrapping ErrNotExist", err)
	}
	if se.Denied() {
		t.Error("a missing parameter is reported as denied")
	}
}

func TestDenied(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EROFS, syscall.EACCES, syscall.EPERM} {
		e := &Error{Name: "net.ipv4.ip_forward", Value: "1", Err: &fs.PathError{Op: "open", Path: "/proc/sys/net/ipv4/ip_forward", Err: errno}}
		if !e.Denied() {
			t.Errorf("%v is not reported as denied", errno)
		}
	}
}
