package mesh

import (
	"encoding/json"
	"net/netip"
	"testing"
)

// meshNodeSeeds are MeshNode specs as a node would write them (the JSON of
// api/v1alpha1.MeshNodeSpec).
var meshNodeSeeds = []string{
	`{"publicKey":"YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=","controlKey":"YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=","natType":"cone","meshIPs":["10.77.0.1"],"podCIDRs":["10.244.1.0/24"],"podIPs":["10.99.0.4/31"],"advertisedCIDRs":["0.0.0.0/0"],"endpoints":[{"address":"198.18.0.5:51820","kind":"host"}]}`,
	`{"publicKey":"","meshIPs":["::ffff:10.0.0.1"],"podCIDRs":["fd00::/0"]}`,
}

// A MeshNode is whatever its node wrote: decoding it and computing the
// topology from it must never panic, and what comes out routed must be
// what the facts back.
//
// The input is a MeshNode's spec, decoded straight into a Claim: encoding/
// json matches the spec's keys to Claim's fields (case-insensitively; the
// types are the same), so the fuzzer needs no API types. With them, make
// test compiled all of apimachinery with fuzzing instrumentation, most of
// its fuzzing time. daemon/kube's TestClaimCopiesEverySpecField checks that
// a spec's JSON decodes to the Claim MeshNodeClaim makes of it.
func FuzzMeshNode(f *testing.F) {
	for _, s := range meshNodeSeeds {
		f.Add([]byte(s))
	}
	facts := Facts{
		MeshIPs:  []netip.Addr{netip.MustParseAddr("10.77.0.1")},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		PodIPs:   map[netip.Addr]bool{netip.MustParseAddr("10.99.0.4"): true, netip.MustParseAddr("10.99.0.5"): true},
	}
	self := Self{Name: "self", Protected: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Claim
		if json.Unmarshal(b, &c) != nil {
			return
		}
		c.Name = "a" // the object's name, which the spec does not hold
		n, err := ParseClaim(c)
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
