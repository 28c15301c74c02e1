package mesh

import (
	"fmt"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/vocab"
)

// claimsOf returns n claims shaped like the scale bench's fake nodes, and
// the facts that back them.
func claimsOf(tb testing.TB, n int) ([]Claim, map[string]Facts) {
	tb.Helper()
	claims := make([]Claim, 0, n)
	facts := make(map[string]Facts, n)
	for i := range n {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			tb.Fatal(err)
		}
		name := fmt.Sprintf("n%04d", i)
		mip := netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)})
		pods := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i>>8), byte(i), 0}), 24)
		claims = append(claims, Claim{
			Name: name, PublicKey: k.PublicKey().String(), ControlKey: k.PublicKey().String(),
			Endpoints: []ClaimedEndpoint{{Address: fmt.Sprintf("198.18.%d.%d:51820", i>>8, i&255), Kind: vocab.EndpointHost}},
			MeshIPs:   []string{mip.String()},
			PodCIDRs:  []string{pods.String()},
		})
		facts[name] = Facts{MeshIPs: []netip.Addr{mip}, PodCIDRs: []netip.Prefix{pods}}
	}
	return claims, facts
}

func BenchmarkParseClaims1000(b *testing.B) {
	claims, _ := claimsOf(b, 1000)
	b.ResetTimer()
	for range b.N {
		for _, c := range claims {
			if _, err := ParseClaim(c); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkDesired1000(b *testing.B) {
	claims, facts := claimsOf(b, 1000)
	var nodes []Node
	for _, c := range claims {
		n, err := ParseClaim(c)
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	self := Self{Name: "self", Protected: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}}
	b.ResetTimer()
	for range b.N {
		Desired(self, nodes, facts)
	}
}
