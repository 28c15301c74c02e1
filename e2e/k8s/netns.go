package k8s

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

// netnsPath is where `ip netns add NAME` bind-mounts a named namespace.
func netnsPath(name string) string { return "/run/netns/" + name }

// dialFunc matches rest.Config.Dial and http.Transport.DialContext.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// DialerIn returns a dialer whose connections are created inside the
// named network namespace (or the current one when name is ""). A socket
// stays in the namespace it was created in, so the test process can talk to
// an API server that listens only on an address inside a lab netns, without
// any veth to the host or port forwarding: lab traffic stays inside the
// namespaces the lab created.
//
// The namespace is opened on every dial instead of once, so the dialer holds
// no file descriptor that would keep a deleted namespace alive.
func DialerIn(name string) dialFunc {
	var d net.Dialer
	if name == "" {
		return d.DialContext
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		// Resolve names here, in the caller's namespace and on any thread:
		// the resolver may use helper goroutines that would not run in the
		// target namespace. Lab addresses are IP literals, so this is cheap.
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("dial %s in netns %s: %w", address, name, err)
		}
		if net.ParseIP(host) == nil {
			addrs, err := net.DefaultResolver.LookupHost(ctx, host)
			if err != nil || len(addrs) == 0 {
				return nil, fmt.Errorf("resolve %s for netns %s: %w", host, name, err)
			}
			address = net.JoinHostPort(addrs[0], port)
		}
		target, err := ns.GetNS(netnsPath(name))
		if err != nil {
			return nil, fmt.Errorf("open netns %s: %w", name, err)
		}
		defer target.Close()
		var conn net.Conn
		// Do runs the callback on a locked OS thread switched into the
		// namespace; socket() happens there, connect completes via the poller.
		err = target.Do(func(ns.NetNS) error {
			var derr error
			conn, derr = d.DialContext(ctx, network, address)
			return derr
		})
		if err != nil {
			return nil, fmt.Errorf("dial %s in netns %s: %w", address, name, err)
		}
		return conn, nil
	}
}

// ipCmd runs the iproute2 `ip` command; namespace plumbing is done with it
// because the lab already depends on `ip netns exec` to start processes.
func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
