package mesh

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/vocab"
)

func key(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func TestParseClaim(t *testing.T) {
	k := key(t)
	n, err := ParseClaim(Claim{
		Name:      "n1",
		PublicKey: k.String(),
		Endpoints: []ClaimedEndpoint{{Address: "198.18.0.11:51820", Kind: vocab.EndpointHost}},
		MeshIPs:   []string{"10.77.0.1", "fd77:1ace::1"},
		PodCIDRs:  []string{"10.244.1.0/24"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.MeshIPClaims) != 2 || !samePrefixes(n.PodCIDRClaims, pfx("10.244.1.0/24")) || len(n.AllowedIPs) != 0 {
		t.Fatalf("claims %v %v, allowed %v: a MeshNode's prefixes are claims until checked", n.MeshIPClaims, n.PodCIDRClaims, n.AllowedIPs)
	}
	if n.PublicKey != k || n.Endpoints[0] != netip.MustParseAddrPort("198.18.0.11:51820") {
		t.Fatalf("bad parse: %+v", n)
	}

	bad := []Claim{
		{PublicKey: "nope", MeshIPs: []string{"10.77.0.1"}},
		{PublicKey: k.String()},
		{PublicKey: k.String(), MeshIPs: []string{"10.77.0.300"}},
		{PublicKey: k.String(), MeshIPs: []string{"10.77.0.1"}, PodCIDRs: []string{"10.0.0.0/40"}},
		{PublicKey: k.String(), MeshIPs: []string{"10.77.0.1"}, Endpoints: []ClaimedEndpoint{{Address: "10.0.0.1"}}},
	}
	for i, c := range bad {
		c.Name = "x"
		if _, err := ParseClaim(c); err == nil {
			t.Errorf("case %d: want error", i)
		}
	}
}

// node makes a peer that claims a mesh IP and a pod CIDR, and the facts
// that back both.
func node(t *testing.T, name, meshIP, podCIDR string) (Node, Facts) {
	t.Helper()
	n := Node{Name: name, PublicKey: key(t), MeshIPClaims: []netip.Addr{netip.MustParseAddr(meshIP)}, PodCIDRClaims: pfx(podCIDR)}
	return n, Facts{MeshIPs: n.MeshIPClaims, PodCIDRs: pfx(podCIDR)}
}

var selfTest = Self{Name: "self", Protected: pfx("192.168.1.0/24", "198.18.0.1/32")}

func TestDesired(t *testing.T) {
	a, fa := node(t, "a", "10.77.0.1", "10.244.1.0/24")
	c, fc := node(t, "c", "10.77.0.3", "10.244.3.0/24")
	gone, _ := node(t, "gone", "10.77.0.4", "10.244.4.0/24")
	me, fme := node(t, "self", "10.77.0.9", "10.244.9.0/24")
	facts := map[string]Facts{"a": fa, "c": fc, "self": fme}
	top := Desired(selfTest, []Node{c, me, a, gone}, facts)
	if len(top.Peers) != 2 || top.Peers[0].Name != "a" || top.Peers[1].Name != "c" {
		t.Fatalf("peers %+v", top.Peers)
	}
	if got := top.Routes(); !samePrefixes(got, pfx("10.77.0.1/32", "10.244.1.0/24", "10.77.0.3/32", "10.244.3.0/24")) {
		t.Fatalf("routes %v", got)
	}
	if len(top.Conflicts) != 0 {
		t.Fatalf("conflicts %v", top.Conflicts)
	}
}

// Each attack of a node that publishes whatever it likes in its own
// MeshNode (trust-boundaries review) is refused.
func TestDesiredRefusesUnbackedClaims(t *testing.T) {
	victim, fv := node(t, "victim", "10.77.0.1", "10.244.1.0/24")
	attacker, fa := node(t, "attacker", "10.77.0.2", "10.244.2.0/24")
	fa.Grants = pfx("172.16.0.0/16")
	attacker.MeshIPClaims = append(attacker.MeshIPClaims, netip.MustParseAddr("10.77.0.99")) // no IPClaim
	attacker.PodCIDRClaims = append(attacker.PodCIDRClaims,
		pfx("10.244.1.0/25", "10.244.1.128/25", "10.244.7.0/24")...) // the victim's, as two /25s; one not allocated
	attacker.AdvertisedClaims = pfx(
		"198.18.0.1/32",  // the API server
		"192.168.1.0/24", // this node's underlay
		"0.0.0.0/0",      // a default route
		"10.0.0.0/8",     // no grant
		"172.16.5.0/24",  // granted
	)
	// Advertised "granted" overlap: the grant covers the victim's CIDR too.
	fa.Grants = append(fa.Grants, pfx("10.244.0.0/16")...)
	attacker.AdvertisedClaims = append(attacker.AdvertisedClaims, pfx("10.244.1.0/26")...)
	facts := map[string]Facts{"victim": fv, "attacker": fa}
	top := Desired(selfTest, []Node{victim, attacker}, facts)
	byName := map[string]Node{}
	for _, p := range top.Peers {
		byName[p.Name] = p
	}
	if got := byName["victim"].AllowedIPs; !samePrefixes(got, pfx("10.77.0.1/32", "10.244.1.0/24")) {
		t.Errorf("victim allowed %v", got)
	}
	if got := byName["attacker"].AllowedIPs; !samePrefixes(got, pfx("10.77.0.2/32", "10.244.2.0/24", "172.16.5.0/24")) {
		t.Errorf("attacker allowed %v, want only its own and the granted prefix", got)
	}
	if len(top.Conflicts) != 9 {
		t.Errorf("%d conflicts, want 9:\n%s", len(top.Conflicts), strings.Join(top.Conflicts, "\n"))
	}
}

// Nodes are taken in name order, so a node named to sort first cannot take
// what the cluster gave another: its claim is not backed in the first place.
func TestDesiredOrderGivesNothingAway(t *testing.T) {
	victim, fv := node(t, "zz-victim", "10.77.0.1", "10.244.1.0/24")
	attacker, fa := node(t, "aa-attacker", "10.77.0.2", "10.244.2.0/24")
	attacker.PodCIDRClaims = append(attacker.PodCIDRClaims, pfx("10.244.1.0/24")...)
	top := Desired(selfTest, []Node{victim, attacker}, map[string]Facts{"zz-victim": fv, "aa-attacker": fa})
	if got := top.Peers[1].AllowedIPs; top.Peers[1].Name != "zz-victim" || !samePrefixes(got, pfx("10.77.0.1/32", "10.244.1.0/24")) {
		t.Fatalf("victim %s allowed %v", top.Peers[1].Name, got)
	}
}

// A WireGuard key published by two nodes (a compromised node copying
// another's) is given to neither; one copying this node's is skipped.
func TestDesiredDuplicateKeys(t *testing.T) {
	a, fa := node(t, "a", "10.77.0.1", "10.244.1.0/24")
	b, fb := node(t, "b", "10.77.0.2", "10.244.2.0/24")
	c, fc := node(t, "c", "10.77.0.3", "10.244.3.0/24")
	b.PublicKey = a.PublicKey
	self := selfTest
	self.PublicKey = key(t)
	c.PublicKey = self.PublicKey
	top := Desired(self, []Node{a, b, c}, map[string]Facts{"a": fa, "b": fb, "c": fc})
	if len(top.Peers) != 0 {
		t.Fatalf("peers %+v, want none", top.Peers)
	}
	if len(top.Conflicts) != 3 {
		t.Fatalf("conflicts %v", top.Conflicts)
	}
}

func TestPeerChanges(t *testing.T) {
	ka, kb, kold := key(t), key(t), key(t)
	epA := netip.MustParseAddrPort("198.18.0.11:51820")
	desired := []Node{
		{Name: "a", PublicKey: ka, AllowedIPs: pfx("10.77.0.1/32")},
		{Name: "b", PublicKey: kb, AllowedIPs: pfx("10.77.0.2/32")},
	}
	endpoints := map[wgtypes.Key]netip.AddrPort{ka: epA, kb: netip.MustParseAddrPort("198.18.0.12:51820")}
	endpoint := func(k wgtypes.Key) netip.AddrPort { return endpoints[k] }

	// From nothing: add both, with allowed IPs and endpoints.
	cfg := PeerChanges(desired, nil, endpoint)
	if len(cfg.Peers) != 2 || !cfg.Peers[0].ReplaceAllowedIPs || cfg.Peers[0].Endpoint == nil {
		t.Fatalf("initial config %+v", cfg)
	}

	// In sync (a's endpoint as wgctrl reports it, v4-in-v6): nothing to do;
	// an unknown peer is removed.
	actual := []wgtypes.Peer{
		{PublicKey: ka, Endpoint: &net.UDPAddr{IP: net.ParseIP("198.18.0.11"), Port: 51820}, AllowedIPs: prefixesToIPNets(pfx("10.77.0.1/32"))},
		{PublicKey: kb, Endpoint: net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.0.12:51820")), AllowedIPs: prefixesToIPNets(pfx("10.77.0.2/32"))},
		{PublicKey: kold},
	}
	cfg = PeerChanges(desired, actual, endpoint)
	if len(cfg.Peers) != 1 || cfg.Peers[0].PublicKey != kold || !cfg.Peers[0].Remove {
		t.Fatalf("want only removal of the old peer, got %+v", cfg.Peers)
	}

	// b's allowed IPs grew (pod CIDR) and its endpoint is not the wanted one.
	desired[1].AllowedIPs = pfx("10.77.0.2/32", "10.244.2.0/24")
	actual = actual[:2]
	actual[1].Endpoint = &net.UDPAddr{IP: net.ParseIP("203.0.113.9"), Port: 1}
	cfg = PeerChanges(desired, actual, endpoint)
	if len(cfg.Peers) != 1 || cfg.Peers[0].PublicKey != kb || len(cfg.Peers[0].AllowedIPs) != 2 || cfg.Peers[0].Endpoint.Port != 51820 {
		t.Fatalf("want b updated, got %+v", cfg.Peers)
	}

	// Without an endpoint function the device's endpoints are left alone.
	cfg = PeerChanges(desired, actual, nil)
	if len(cfg.Peers) != 1 || cfg.Peers[0].Endpoint != nil {
		t.Fatalf("want b's allowed IPs only, got %+v", cfg.Peers)
	}
}

func TestRouteChanges(t *testing.T) {
	add, del := RouteChanges(pfx("10.77.0.1/32", "10.244.1.0/24"), pfx("10.77.0.1/32", "10.77.0.5/32"))
	if !samePrefixes(add, pfx("10.244.1.0/24")) || !samePrefixes(del, pfx("10.77.0.5/32")) {
		t.Fatalf("add %v del %v", add, del)
	}
	add, del = RouteChanges(pfx("10.77.0.1/32"), pfx("10.77.0.1/32"))
	if len(add)+len(del) != 0 {
		t.Fatalf("in sync but add %v del %v", add, del)
	}
}

func TestDesiredVerifiesPodIPClaims(t *testing.T) {
	nodes := []Node{
		{Name: "a", PublicKey: key(t), MeshIPClaims: []netip.Addr{netip.MustParseAddr("10.77.0.1")},
			PodIPClaims: pfx("10.99.1.4/31", "10.99.1.9/32", "10.244.7.0/25", "10.98.0.0/24")},
		{Name: "b", PublicKey: key(t), MeshIPClaims: []netip.Addr{netip.MustParseAddr("10.77.0.2")}, PodIPClaims: pfx("10.99.1.20/32")},
	}
	pods := map[netip.Addr]bool{}
	for _, s := range []string{"10.99.1.4", "10.99.1.5", "10.99.1.9"} {
		pods[netip.MustParseAddr(s)] = true
	}
	facts := map[string]Facts{
		// a: two pods back 10.99.1.4/31, one 10.99.1.9; its pod CIDR backs
		// 10.244.7.0/25; nothing backs 10.98.0.0/24 (too large for pods alone).
		"a": {MeshIPs: nodes[0].MeshIPClaims, PodCIDRs: pfx("10.244.7.0/24"), PodIPs: pods, NodeIPs: []netip.Addr{netip.MustParseAddr("192.168.2.10")}},
		// b claims an address of a's pod: no Pod bound to b backs it.
		"b": {MeshIPs: nodes[1].MeshIPClaims},
	}
	top := Desired(selfTest, nodes, facts)
	if len(top.Peers) != 2 {
		t.Fatalf("peers %+v", top.Peers)
	}
	if got, want := top.Peers[0].AllowedIPs, pfx("10.77.0.1/32", "10.99.1.4/31", "10.99.1.9/32", "10.244.7.0/25"); !samePrefixes(got, want) {
		t.Errorf("a allowed %v, want %v", got, want)
	}
	if got := top.Peers[1].AllowedIPs; !samePrefixes(got, pfx("10.77.0.2/32")) {
		t.Errorf("b allowed %v: an unbacked claim was accepted", got)
	}
	if len(top.Conflicts) != 2 {
		t.Errorf("conflicts %v, want a's /24 and b's address", top.Conflicts)
	}
	if got := top.NodeIPRoutes(); !samePrefixes(got, pfx("192.168.2.10/32")) {
		t.Errorf("node-IP routes %v", got)
	}
	if got := top.Peers[0].WireGuardAllowedIPs(); !slices.Contains(got, netip.MustParsePrefix("192.168.2.10/32")) {
		t.Errorf("WireGuard allowed IPs %v lack the node IP", got)
	}
	if slices.Contains(top.Routes(), netip.MustParsePrefix("192.168.2.10/32")) {
		t.Errorf("node IP in the main-table routes %v", top.Routes())
	}
}

func TestAggregate(t *testing.T) {
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	for _, tc := range []struct {
		in   []netip.Addr
		want []netip.Prefix
	}{
		{nil, nil},
		{addrs("10.0.0.1"), pfx("10.0.0.1/32")},
		{addrs("10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"), pfx("10.0.0.0/30")},
		// 1 and 2 are adjacent but not siblings: no merge.
		{addrs("10.0.0.1", "10.0.0.2"), pfx("10.0.0.1/32", "10.0.0.2/32")},
		{addrs("10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.4"), pfx("10.0.0.2/31", "10.0.0.4/32")},
		{addrs("fd00::a", "fd00::b", "10.0.0.9"), pfx("10.0.0.9/32", "fd00::a/127")},
	} {
		if got := Aggregate(tc.in); !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
			t.Errorf("Aggregate(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// A peer's endpoint inside a prefix routed into the mesh would send
// WireGuard into its own tunnel: it is dropped, and said so.
func TestDesiredDropsTunnelledEndpoints(t *testing.T) {
	a, fa := node(t, "a", "10.77.0.1", "10.99.1.0/24")
	a.Endpoints = []netip.AddrPort{netip.MustParseAddrPort("198.18.0.13:51820"), netip.MustParseAddrPort("10.99.1.1:51820")}
	a.EndpointKinds = []vocab.EndpointKind{vocab.EndpointSTUN, vocab.EndpointHost}
	top := Desired(selfTest, []Node{a}, map[string]Facts{"a": fa})
	if got := top.Peers[0].Endpoints; len(got) != 1 || got[0] != netip.MustParseAddrPort("198.18.0.13:51820") || top.Peers[0].EndpointKinds[0] != "stun" {
		t.Fatalf("endpoints %v %v", got, top.Peers[0].EndpointKinds)
	}
	if len(top.Conflicts) != 1 {
		t.Fatalf("conflicts %v", top.Conflicts)
	}
}
