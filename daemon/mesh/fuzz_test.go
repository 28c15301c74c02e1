package mesh

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// A MeshNode is whatever its node wrote: decoding it and computing the
// topology from it must never panic, and what comes out routed must be
// what the facts back.
func FuzzMeshNode(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"a"},"spec":{"publicKey":"YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=","controlKey":"YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=","meshIPs":["10.77.0.1"],"podCIDRs":["10.244.1.0/24"],"podIPs":["10.99.0.4/31"],"advertisedCIDRs":["0.0.0.0/0"],"endpoints":[{"address":"198.18.0.5:51820","kind":"host"}]}}`))
	f.Add([]byte(`{"metadata":{"name":"a"},"spec":{"publicKey":"","meshIPs":["::ffff:10.0.0.1"],"podCIDRs":["fd00::/0"]}}`))
	facts := Facts{
		MeshIPs:  []netip.Addr{netip.MustParseAddr("10.77.0.1")},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		PodIPs:   map[netip.Addr]bool{netip.MustParseAddr("10.99.0.4"): true, netip.MustParseAddr("10.99.0.5"): true},
	}
	self := Self{Name: "self", Protected: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var mn v1alpha1.MeshNode
		if json.Unmarshal(b, &mn) != nil {
			return
		}
		n, err := ParseClaim(claimOf(&mn))
		if err != nil {
			return
		}
		top := Desired(self, []Node{n}, map[string]Facts{n.Name: facts})
		for _, p := range top.Peers {
			for _, a := range p.AllowedIPs {
				if a.Bits() == 0 || a.Overlaps(self.Protected[0]) {
					t.Fatalf("routed %s from %s", a, b)
				}
				if !within(facts.PodCIDRs, a) && !facts.backsPodIPs(a) && !(a.IsSingleIP() && a.Addr() == facts.MeshIPs[0]) {
					t.Fatalf("routed unbacked %s from %s", a, b)
				}
			}
		}
	})
}

// claimOf is daemon/kube's MeshNodeClaim, which this package's tests
// cannot import (kube imports mesh): the fuzzer starts from a MeshNode's
// JSON, as the daemon does.
func claimOf(mn *v1alpha1.MeshNode) Claim {
	c := Claim{Name: mn.Name, PublicKey: mn.Spec.PublicKey, ControlKey: mn.Spec.ControlKey, NATType: mn.Spec.NATType,
		MeshIPs: mn.Spec.MeshIPs, PodCIDRs: mn.Spec.PodCIDRs, PodIPs: mn.Spec.PodIPs, AdvertisedCIDRs: mn.Spec.AdvertisedCIDRs}
	for _, ep := range mn.Spec.Endpoints {
		c.Endpoints = append(c.Endpoints, ClaimedEndpoint{Address: ep.Address, Kind: ep.Kind})
	}
	return c
}
