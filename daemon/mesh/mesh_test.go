package mesh

import (
	"net"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/api/v1alpha1"
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

func TestFromMeshNode(t *testing.T) {
	k := key(t)
	mn := &v1alpha1.MeshNode{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Spec: v1alpha1.MeshNodeSpec{
			PublicKey: k.String(),
			Endpoints: []v1alpha1.Endpoint{{Address: "198.18.0.11:51820", Kind: v1alpha1.EndpointHost}},
			MeshIPs:   []string{"10.77.0.1", "fd77:1ace::1"},
			PodCIDRs:  []string{"10.244.1.0/24"},
		},
	}
	n, err := FromMeshNode(mn)
	if err != nil {
		t.Fatal(err)
	}
	want := pfx("10.77.0.1/32", "fd77:1ace::1/128", "10.244.1.0/24")
	if !samePrefixes(n.AllowedIPs, want) {
		t.Fatalf("allowed %v, want %v", n.AllowedIPs, want)
	}
	if n.PublicKey != k || n.Endpoints[0] != netip.MustParseAddrPort("198.18.0.11:51820") {
		t.Fatalf("bad parse: %+v", n)
	}

	bad := []v1alpha1.MeshNodeSpec{
		{PublicKey: "nope", MeshIPs: []string{"10.77.0.1"}},
		{PublicKey: k.String()},
		{PublicKey: k.String(), MeshIPs: []string{"10.77.0.300"}},
		{PublicKey: k.String(), MeshIPs: []string{"10.77.0.1"}, PodCIDRs: []string{"10.0.0.0/40"}},
		{PublicKey: k.String(), MeshIPs: []string{"10.77.0.1"}, Endpoints: []v1alpha1.Endpoint{{Address: "10.0.0.1"}}},
	}
	for i, spec := range bad {
		if _, err := FromMeshNode(&v1alpha1.MeshNode{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: spec}); err == nil {
			t.Errorf("case %d: want error", i)
		}
	}
}

func TestDesired(t *testing.T) {
	ka, kb, kc := key(t), key(t), key(t)
	nodes := []Node{
		{Name: "c", PublicKey: kc, AllowedIPs: pfx("10.77.0.3/32", "10.244.1.0/24")},
		{Name: "self", PublicKey: key(t), AllowedIPs: pfx("10.77.0.9/32")},
		{Name: "a", PublicKey: ka, AllowedIPs: pfx("10.77.0.1/32", "10.244.1.0/24")},
		{Name: "gone", PublicKey: key(t), AllowedIPs: pfx("10.77.0.4/32")},
		{Name: "b", PublicKey: ka, AllowedIPs: pfx("10.77.0.2/32")},
	}
	_ = kb
	live := func(n string) bool { return n != "gone" }
	top := Desired("self", nodes, live)
	if len(top.Peers) != 2 || top.Peers[0].Name != "a" || top.Peers[1].Name != "c" {
		t.Fatalf("peers %+v", top.Peers)
	}
	// c's pod CIDR duplicates a's; a (first by name) keeps it.
	if !samePrefixes(top.Peers[1].AllowedIPs, pfx("10.77.0.3/32")) {
		t.Fatalf("c allowed %v", top.Peers[1].AllowedIPs)
	}
	if len(top.Conflicts) != 2 {
		t.Fatalf("conflicts %v, want duplicate key (b) and duplicate prefix (c)", top.Conflicts)
	}
	if got := top.Routes(); !samePrefixes(got, pfx("10.77.0.1/32", "10.244.1.0/24", "10.77.0.3/32")) {
		t.Fatalf("routes %v", got)
	}
}

func TestPeerChanges(t *testing.T) {
	ka, kb, kold := key(t), key(t), key(t)
	epA := netip.MustParseAddrPort("198.18.0.11:51820")
	desired := []Node{
		{Name: "a", PublicKey: ka, WireGuardEndpoint: epA, AllowedIPs: pfx("10.77.0.1/32")},
		{Name: "b", PublicKey: kb, WireGuardEndpoint: netip.MustParseAddrPort("198.18.0.12:51820"), AllowedIPs: pfx("10.77.0.2/32")},
	}

	// From nothing: add both, with allowed IPs and endpoints.
	cfg := PeerChanges(desired, nil)
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
	cfg = PeerChanges(desired, actual)
	if len(cfg.Peers) != 1 || cfg.Peers[0].PublicKey != kold || !cfg.Peers[0].Remove {
		t.Fatalf("want only removal of the old peer, got %+v", cfg.Peers)
	}

	// b's allowed IPs grew (pod CIDR) and its endpoint is not the wanted one.
	desired[1].AllowedIPs = pfx("10.77.0.2/32", "10.244.2.0/24")
	actual = actual[:2]
	actual[1].Endpoint = &net.UDPAddr{IP: net.ParseIP("203.0.113.9"), Port: 1}
	cfg = PeerChanges(desired, actual)
	if len(cfg.Peers) != 1 || cfg.Peers[0].PublicKey != kb || len(cfg.Peers[0].AllowedIPs) != 2 || cfg.Peers[0].Endpoint.Port != 51820 {
		t.Fatalf("want b updated, got %+v", cfg.Peers)
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
