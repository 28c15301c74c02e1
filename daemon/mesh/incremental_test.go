package mesh

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/vocab"
)

// Over random sequences of joins, leaves, key and endpoint changes, claim,
// fact and grant changes (with overlapping prefixes, duplicate keys, self's
// key, endpoints inside routed prefixes), the cache returns exactly what
// Desired computed from scratch returns, after every step, and its Routes
// and NodeIPRoutes are the Topology's. It must also take the patch path
// often, or the test proves little.
func TestDesiredCacheMatchesDesired(t *testing.T) {
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 7))
		keys := make([]wgtypes.Key, 12) // few keys: duplicates happen
		for i := range keys {
			keys[i][0], keys[i][1] = byte(i+1), byte(seed)
		}
		self := Self{Name: "self", PublicKey: keys[0], Protected: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/24")}}
		addr := func() netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(3)), byte(r.IntN(8))}) }
		prefix := func() netip.Prefix {
			return netip.PrefixFrom(addr(), 22+r.IntN(11)).Masked()
		}
		endpoints := func(n *Node) {
			n.Endpoints, n.EndpointKinds = nil, nil
			for range r.IntN(3) {
				a := netip.AddrFrom4([4]byte{192, 0, 2, byte(r.IntN(4))})
				if r.IntN(3) == 0 {
					a = addr() // maybe inside a routed prefix
				}
				n.Endpoints = append(n.Endpoints, netip.AddrPortFrom(a, 51820))
				n.EndpointKinds = append(n.EndpointKinds, vocab.EndpointKind(fmt.Sprint(r.IntN(2))))
			}
		}
		newNode := func(name string) Node {
			n := Node{Name: name, PublicKey: keys[1+r.IntN(len(keys)-1)], NATType: vocab.NATType(fmt.Sprint(r.IntN(2)))}
			n.ControlKey[0] = byte(r.IntN(3))
			n.MeshIPClaims = []netip.Addr{addr()}
			n.PodCIDRClaims = []netip.Prefix{prefix()}
			if r.IntN(4) == 0 {
				n.AdvertisedClaims = []netip.Prefix{prefix()}
			}
			endpoints(&n)
			return n
		}
		newFacts := func(n Node) Facts {
			f := Facts{MeshIPs: slices.Clone(n.MeshIPClaims), PodCIDRs: slices.Clone(n.PodCIDRClaims)}
			if r.IntN(3) == 0 {
				f.Grants = []netip.Prefix{prefix()}
			}
			if r.IntN(4) == 0 {
				f.NodeIPs = []netip.Addr{addr()}
			}
			if r.IntN(5) == 0 {
				f.MeshIPs = nil // unbacked claim
			}
			return f
		}
		nodes := map[string]Node{}
		facts := map[string]Facts{}
		var c DesiredCache
		patched := 0
		for step := range 1500 {
			name := fmt.Sprintf("n%02d", r.IntN(25))
			n, exists := nodes[name]
			switch op := r.IntN(20); {
			case !exists || op == 0: // join (or re-join)
				n = newNode(name)
				nodes[name] = n
				if r.IntN(6) != 0 {
					facts[name] = newFacts(n)
				} else {
					delete(facts, name)
				}
			case op == 1: // leave
				delete(nodes, name)
				delete(facts, name)
			case op == 2: // its Node goes or comes
				if _, live := facts[name]; live {
					delete(facts, name)
				} else {
					facts[name] = newFacts(n)
				}
			case op == 3: // a fact changes
				facts[name] = newFacts(n)
			case op == 4: // a claim changes
				n.PodCIDRClaims = []netip.Prefix{prefix()}
				nodes[name] = n
			case op == 5: // self changes
				self.Protected = []netip.Prefix{prefix()}
			case op == 6: // a key already in use, maybe self's
				n.PublicKey = keys[r.IntN(len(keys))]
				nodes[name] = n
			case op < 13: // a fresh key: the common case
				var k wgtypes.Key
				k[0], k[1], k[2] = 0xff, byte(step), byte(step>>8)
				n.PublicKey = k
				nodes[name] = n
			case op < 16:
				endpoints(&n)
				nodes[name] = n
			case op < 18:
				n.ControlKey[1]++
				n.NATType = vocab.NATType(fmt.Sprint(r.IntN(3)))
				nodes[name] = n
			case op == 18:
				c.Reset()
			default: // nothing changed
			}
			in := make([]Node, 0, len(nodes))
			for _, n := range nodes {
				in = append(in, n)
			}
			r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
			want := Desired(self, in, facts)
			gen, routes := c.RoutesGen(), slices.Clone(c.Routes())
			got := c.Update(self, in, facts)
			if c.RoutesGen() == gen && !slices.Equal(want.Routes(), routes) {
				t.Fatalf("seed %d step %d: routes changed under the same RoutesGen", seed, step)
			}
			if !c.LastWasFull() {
				patched++
			}
			if !reflect.DeepEqual(normalize(got), normalize(want)) {
				t.Fatalf("seed %d step %d (patched: %v):\n got  %+v\n want %+v", seed, step, !c.LastWasFull(), got, want)
			}
			if !slices.Equal(c.Routes(), want.Routes()) || !slices.Equal(c.NodeIPRoutes(), want.NodeIPRoutes()) {
				t.Fatalf("seed %d step %d: routes %v / %v, want %v / %v", seed, step, c.Routes(), c.NodeIPRoutes(), want.Routes(), want.NodeIPRoutes())
			}
		}
		if patched < 300 {
			t.Errorf("seed %d: only %d of 1500 updates patched", seed, patched)
		}
	}
}

// normalize makes nil and empty slices compare equal: the patch and the
// full computation may leave either for "none".
func normalize(t Topology) Topology {
	out := Topology{Conflicts: slices.Clip(t.Conflicts)}
	if len(out.Conflicts) == 0 {
		out.Conflicts = nil
	}
	for _, p := range t.Peers {
		for _, s := range []*[]netip.Prefix{&p.AllowedIPs, &p.NodeIPs} {
			if len(*s) == 0 {
				*s = nil
			}
		}
		if len(p.Endpoints) == 0 {
			p.Endpoints, p.EndpointKinds = nil, nil
		}
		if len(p.EndpointKinds) == 0 {
			p.EndpointKinds = nil
		}
		out.Peers = append(out.Peers, p)
	}
	return out
}
