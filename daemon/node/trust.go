package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/wirelace/wirelace/daemon/mesh"
)

// resolveTimeout bounds the start-up look-up of the infrastructure's
// addresses.
const resolveTimeout = 10 * time.Second

// infrastructure returns the addresses this node must always reach outside
// the mesh: the API server, the relays and the STUN servers. A peer that
// got one of them routed to itself would take this node's control plane
// (its Lease, the watches that would tell it to undo the route) or its
// relays hostage. Names are resolved once, at start.
func (d *Daemon) infrastructure(ctx context.Context) ([]netip.Prefix, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	var hosts []string
	if u, err := url.Parse(d.clients.Host); err == nil && u.Hostname() != "" {
		hosts = append(hosts, u.Hostname())
	}
	for _, r := range d.cfg.Relays {
		if h, _, err := net.SplitHostPort(r); err == nil {
			hosts = append(hosts, h)
		}
	}
	var out []netip.Prefix
	stun, err := d.cfg.STUNAddrs()
	if err != nil {
		return nil, err
	}
	for _, ap := range stun {
		out = append(out, host(ap.Addr()))
	}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			out = append(out, host(a))
			continue
		}
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
		if err != nil {
			return nil, fmt.Errorf("resolve %s (the API server or a relay): %w", h, err)
		}
		for _, a := range addrs {
			out = append(out, host(a))
		}
	}
	return out, nil
}

func host(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

// self is what mesh.Desired needs to know of this node. Protected: its own
// networks (the underlay), the infrastructure, its own mesh IPs and pod
// CIDRs: nothing a peer claims may overlap them.
func (d *Daemon) self(onLink []netip.Prefix) mesh.Self {
	s := mesh.Self{Name: d.cfg.NodeName, PublicKey: d.keys.WireGuard.PublicKey()}
	s.Protected = append(s.Protected, onLink...)
	s.Protected = append(s.Protected, d.infra...)
	s.Protected = append(s.Protected, d.podCIDRs...)
	for _, a := range d.meshIPs {
		s.Protected = append(s.Protected, host(a))
	}
	return s
}
