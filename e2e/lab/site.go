package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// NAT is how a site's router treats traffic between its LAN and the
// internet, after the kinds found in the field.
type NAT string

const (
	// NATCone is a home or office router: endpoint-independent mapping
	// (nftables masquerade keeps the source port while it can), filtering
	// that admits only replies (new inbound connections are dropped).
	NATCone NAT = "cone"
	// NATSymmetric is a cloud NAT gateway: a new random port for every
	// destination (masquerade random,fully-random), replies only.
	NATSymmetric NAT = "symmetric"
	// NATUDPBlocked masquerades TCP but drops every outbound UDP packet.
	NATUDPBlocked NAT = "udp-blocked"
)

// Site is a private network behind a NAT router. The router's WAN side is on
// the internet bridge; its LAN is a bridge of the site's own.
type Site struct {
	Name   string
	NAT    NAT
	Router string // netns name
	WAN    netip.Addr
	LAN    netip.Prefix
	lab    *Lab
	next   netip.Addr
}

// AddSite creates a site: a router namespace with a WAN veth on the
// internet bridge and a LAN bridge, and the NAT and firewall rules of kind.
func (l *Lab) AddSite(ctx context.Context, name string, kind NAT) (*Site, error) {
	l.mu.Lock()
	l.sites++
	lan := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + l.sites), 0, 0}), 24)
	l.mu.Unlock()
	s := &Site{Name: name, NAT: kind, Router: l.Prefix + "-" + name, LAN: lan, lab: l}
	s.next = lan.Addr().Next().Next() // .1 is the router
	if _, err := run(ctx, "ip", "netns", "add", s.Router); err != nil {
		return nil, err
	}
	l.defer_(func() error { _, err := run(context.Background(), "ip", "netns", "del", s.Router); return err })
	var err error
	if s.WAN, err = l.plugInternet(ctx, s.Router, "wan"); err != nil {
		return nil, err
	}
	gw := lan.Addr().Next()
	r := []string{"ip", "-n", s.Router}
	err = runAll(ctx,
		append(r, "link", "add", "lan", "address", bridgeMAC(), "type", "bridge"),
		append(r, "addr", "add", netip.PrefixFrom(gw, lan.Bits()).String(), "dev", "lan"),
		append(r, "link", "set", "lan", "up"),
		[]string{"ip", "netns", "exec", s.Router, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	)
	if err != nil {
		return nil, err
	}
	if err := s.nft(ctx, natRules(kind)); err != nil {
		return nil, fmt.Errorf("site %s: %w", name, err)
	}
	return s, nil
}

// natRules is the router's nftables ruleset for a NAT kind. The firewall
// also drops new inbound connections on the input hook: without it an early
// inbound packet leaves an UNREPLIED conntrack entry and the router picks
// another port for the later outbound flow, which breaks hole punching
// (see the machine notes). Real home routers behave this way.
func natRules(kind NAT) string {
	masq := "masquerade"
	if kind == NATSymmetric {
		masq = "masquerade random,fully-random"
	}
	var block string
	if kind == NATUDPBlocked {
		block = `oifname "wan" meta l4proto udp drop;`
	}
	return fmt.Sprintf(`table ip labnat {
	chain postnat { type nat hook postrouting priority 100; oifname "wan" %s; }
	chain prenat { type nat hook prerouting priority -100; }
	chain forwarding { type filter hook forward priority 0; ct status dnat accept; iifname "wan" ct state new drop; %s }
	chain incoming { type filter hook input priority 0; iifname "wan" ct state new drop; }
}
`, masq, block)
}

// nft loads rules into the router.
func (s *Site) nft(ctx context.Context, rules string) error { return nftIn(ctx, s.Router, rules) }

// nftIn loads an nftables ruleset (nft -f syntax) in a namespace.
func nftIn(ctx context.Context, netns, rules string) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", netns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s", netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PortForward forwards UDP port on the router's WAN address to the same
// port of node (which must be on this site): the "configured endpoint" of
// a node reachable only through a port-forward.
func (s *Site) PortForward(ctx context.Context, n *Node, port int) error {
	return s.nft(ctx, fmt.Sprintf("add rule ip labnat prenat iifname \"wan\" udp dport %d dnat to %s:%d\n", port, n.IP, port))
}

// Blackhole drops (or, with on=false, stops dropping) all traffic between
// the site and peer, in both directions, at the router: a cut direct path.
func (s *Site) Blackhole(ctx context.Context, peer netip.Addr, on bool) error {
	if !on {
		return s.nft(ctx, "delete table ip labcut\n")
	}
	return s.nft(ctx, fmt.Sprintf(`table ip labcut {
	chain cut { type filter hook forward priority -10; ip daddr %[1]s drop; ip saddr %[1]s drop; }
}
`, peer))
}

// FlushConntrack forgets every NAT mapping of the router, as a router reboot
// or a mapping timeout would.
func (s *Site) FlushConntrack(ctx context.Context) error {
	_, err := run(ctx, "ip", "netns", "exec", s.Router, "conntrack", "-F")
	return err
}

// attach wires a node namespace to the site LAN and returns its address.
func (s *Site) attach(ctx context.Context, nodeNS string) (netip.Addr, error) {
	s.lab.mu.Lock()
	ip := s.next
	s.next = s.next.Next()
	s.lab.mu.Unlock()
	gw := s.LAN.Addr().Next()
	err := runAll(ctx,
		[]string{"ip", "link", "add", nodeNS, "netns", s.Router, "type", "veth", "peer", "name", "eth0", "netns", nodeNS},
		[]string{"ip", "-n", s.Router, "link", "set", nodeNS, "master", "lan", "up"},
		[]string{"ip", "-n", nodeNS, "link", "set", "lo", "up"},
		[]string{"ip", "-n", nodeNS, "addr", "add", netip.PrefixFrom(ip, s.LAN.Bits()).String(), "dev", "eth0"},
		[]string{"ip", "-n", nodeNS, "link", "set", "eth0", "up"},
		[]string{"ip", "-n", nodeNS, "route", "add", "default", "via", gw.String()},
	)
	return ip, err
}
