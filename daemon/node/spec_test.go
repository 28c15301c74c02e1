package node

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/vocab"
	"github.com/wirelace/wirelace/daemon/nat"
)

func testKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func TestNodeSpec(t *testing.T) {
	ap := netip.MustParseAddrPort
	pfx := netip.MustParsePrefix
	s := selfState{
		WireGuardKey: testKey(t),
		ControlKey:   testKey(t),
		MeshIPs:      []netip.Addr{netip.MustParseAddr("10.77.0.3")},
		PodCIDRs:     []netip.Prefix{pfx("10.244.3.0/24")},
		Chained:      []netip.Addr{netip.MustParseAddr("10.99.1.4"), netip.MustParseAddr("10.99.1.5")},
		Advertised:   []netip.Prefix{pfx("192.168.10.0/24")},
		Granted:      []netip.Prefix{pfx("192.168.10.0/24"), pfx("198.18.1.0/24")},
		Configured:   []netip.AddrPort{ap("203.0.113.7:40000")},
		NAT:          nat.Result{Type: vocab.NATCone, Mapped: []netip.AddrPort{ap("198.18.0.20:51820"), ap("10.101.0.2:51820")}},
		Host: []netip.Addr{
			netip.MustParseAddr("10.101.0.2"),  // the LAN address
			netip.MustParseAddr("10.244.3.1"),  // a pod gateway: only reachable through the mesh
			netip.MustParseAddr("10.99.1.5"),   // inside the chained pods' prefix
			netip.MustParseAddr("10.77.0.3"),   // inside the mesh pool
			netip.MustParseAddr("203.0.113.7"), // same address as the configured endpoint, other port
		},
		Port:      51820,
		MeshPools: []netip.Prefix{pfx("10.77.0.0/16")},
	}
	spec, own, err := nodeSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{
		ap("203.0.113.7:40000"), // configured first
		ap("198.18.0.20:51820"), // then STUN (not the one that is a host address)
		ap("10.101.0.2:51820"),  // then host addresses, not the inner ones
		ap("203.0.113.7:51820"),
	}
	if !slices.Equal(own, want) {
		t.Errorf("endpoints %v, want %v", own, want)
	}
	if len(spec.Endpoints) != len(want) {
		t.Fatalf("spec endpoints %v, want %v", spec.Endpoints, want)
	}
	var kinds []vocab.EndpointKind
	for i, e := range spec.Endpoints {
		if e.Address != want[i].String() {
			t.Errorf("spec endpoint %d is %s, want %s", i, e.Address, want[i])
		}
		kinds = append(kinds, vocab.EndpointKind(e.Kind))
	}
	if k := []vocab.EndpointKind{vocab.EndpointConfigured, vocab.EndpointSTUN, vocab.EndpointHost, vocab.EndpointHost}; !slices.Equal(kinds, k) {
		t.Errorf("kinds %v, want %v", kinds, k)
	}
	if !slices.Equal(spec.AdvertisedCIDRs, []string{"192.168.10.0/24", "198.18.1.0/24"}) {
		t.Errorf("advertised %v: want the configured and the granted prefixes, once each", spec.AdvertisedCIDRs)
	}
	if !slices.Equal(spec.PodIPs, []string{"10.99.1.4/31"}) {
		t.Errorf("pod IPs %v, want the chained addresses aggregated", spec.PodIPs)
	}
	if spec.NATType != vocab.NATCone || spec.KeyPrefix != spec.PublicKey[:8] || spec.ControlKey != s.ControlKey.String() {
		t.Errorf("spec %+v", spec)
	}
}

// Behind a symmetric NAT every STUN check sees a new port: the spec must
// not follow it (a MeshNode write each time, for a port no peer can use).
func TestNodeSpecSymmetricNATPortIsStable(t *testing.T) {
	ap := netip.MustParseAddrPort
	base := selfState{
		WireGuardKey: testKey(t), ControlKey: testKey(t),
		Host: []netip.Addr{netip.MustParseAddr("10.102.0.2")}, Port: 51820,
	}
	var specs []string
	for _, mapped := range [][]netip.AddrPort{
		{ap("198.18.0.30:40123"), ap("198.18.0.30:40124")}, // one port per STUN server
		{ap("198.18.0.30:52001"), ap("198.18.0.30:52002")}, // the next check
	} {
		s := base
		s.NAT = nat.Result{Type: vocab.NATSymmetric, Mapped: mapped}
		spec, own, err := nodeSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		if want := []netip.AddrPort{ap("198.18.0.30:51820"), ap("10.102.0.2:51820")}; !slices.Equal(own, want) {
			t.Errorf("endpoints %v, want %v", own, want)
		}
		specs = append(specs, fmt.Sprint(spec.Endpoints))
	}
	if specs[0] != specs[1] {
		t.Errorf("the spec changed with the mapped ports: %s, then %s", specs[0], specs[1])
	}
}

// An empty list is absent in what the API returns: the spec must say nil,
// or every reconcile would see a difference and write the MeshNode again.
func TestNodeSpecEmptyListsAreNil(t *testing.T) {
	spec, _, err := nodeSpec(selfState{
		WireGuardKey: testKey(t), ControlKey: testKey(t),
		Host: []netip.Addr{netip.MustParseAddr("198.18.0.5")}, Port: 51820,
	})
	if err != nil {
		t.Fatal(err)
	}
	if spec.AdvertisedCIDRs != nil || spec.PodIPs != nil || spec.PodCIDRs != nil {
		t.Errorf("want nil lists, got %#v %#v %#v", spec.AdvertisedCIDRs, spec.PodIPs, spec.PodCIDRs)
	}
}

func TestNodeSpecNeedsAnEndpoint(t *testing.T) {
	_, _, err := nodeSpec(selfState{
		WireGuardKey: testKey(t), ControlKey: testKey(t),
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/24")},
		Host:     []netip.Addr{netip.MustParseAddr("10.244.0.1")}, // only a pod gateway
	})
	if err == nil || !strings.Contains(err.Error(), "no usable address") {
		t.Fatalf("want a clear error, got %v", err)
	}
}
