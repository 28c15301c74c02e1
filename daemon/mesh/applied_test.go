package mesh

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// device is a WireGuard device as far as peers go, applying a config the
// way wireguard-go does.
type device map[wgtypes.Key]wgtypes.Peer

func (d device) configure(cfg wgtypes.Config) {
	for _, pc := range cfg.Peers {
		if pc.Remove {
			delete(d, pc.PublicKey)
			continue
		}
		p := d[pc.PublicKey]
		p.PublicKey = pc.PublicKey
		if pc.ReplaceAllowedIPs {
			p.AllowedIPs = nil
		}
		// An allowed IP belongs to one peer: giving it to another takes it.
		for _, n := range pc.AllowedIPs {
			for k, o := range d {
				if k != pc.PublicKey {
					o.AllowedIPs = slices.DeleteFunc(slices.Clone(o.AllowedIPs), func(m net.IPNet) bool { return m.String() == n.String() })
					d[k] = o
				}
			}
			p.AllowedIPs = append(p.AllowedIPs, n)
		}
		if pc.Endpoint != nil {
			p.Endpoint = pc.Endpoint
		}
		d[pc.PublicKey] = p
	}
}

func (d device) peers() []wgtypes.Peer {
	var out []wgtypes.Peer
	for _, p := range d {
		out = append(out, p)
	}
	return out
}

// A random sequence of topologies, each applied as the reconcile applies
// it: the peers remembered from earlier writes (RecordConfig) stay what
// reading the device returns, and the changes computed from them are the
// changes computed from a read of the device.
func TestRememberedPeersMatchDevice(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	keys := make([]wgtypes.Key, 30)
	for i := range keys {
		keys[i][0], keys[i][1] = byte(i), 1
	}
	nodes := map[int]Node{}
	endpoint := func(k wgtypes.Key) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, k[0], k[2]}), 1)
	}
	dev := device{}
	var remembered map[wgtypes.Key]AppliedPeer
	for step := range 2000 {
		// One change: a node joins, leaves, changes key or prefixes.
		i := r.IntN(len(keys))
		switch n, ok := nodes[i]; {
		case !ok:
			nodes[i] = Node{Name: fmt.Sprintf("n%02d", i), PublicKey: keys[i],
				AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 1}), 32)}}
		case r.IntN(4) == 0:
			delete(nodes, i)
		case r.IntN(3) == 0:
			n.PublicKey[2]++ // a new key: another peer on the device
			nodes[i] = n
		default:
			n.AllowedIPs = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), byte(1 + r.IntN(3))}), 32)}
			if r.IntN(2) == 0 {
				n.AllowedIPs = append(n.AllowedIPs, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24))
			}
			nodes[i] = n
		}
		var desired []Node
		for _, n := range nodes {
			desired = append(desired, n)
		}
		slices.SortFunc(desired, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })

		fromDevice := PeerChanges(desired, dev.peers(), endpoint)
		if remembered == nil || r.IntN(50) == 0 { // a full resync now and then
			remembered = AppliedPeers(dev.peers())
		}
		cfg := PeerChangesFrom(desired, remembered, endpoint)
		if !sameConfig(cfg, fromDevice) {
			t.Fatalf("step %d: from memory %+v, from the device %+v", step, cfg, fromDevice)
		}
		dev.configure(cfg)
		RecordConfig(remembered, cfg)
		if got, want := remembered, AppliedPeers(dev.peers()); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: remembered %+v, device %+v", step, got, want)
		}
		if again := PeerChangesFrom(desired, remembered, endpoint); len(again.Peers) != 0 {
			t.Fatalf("step %d: applied, yet changes remain: %+v", step, again)
		}
	}
}

// sameConfig compares two configs as the sets of peer changes they make.
func sameConfig(a, b wgtypes.Config) bool {
	key := func(pc wgtypes.PeerConfig) string { return fmt.Sprintf("%v", pc) }
	as, bs := make([]string, 0, len(a.Peers)), make([]string, 0, len(b.Peers))
	for _, pc := range a.Peers {
		as = append(as, key(pc))
	}
	for _, pc := range b.Peers {
		bs = append(bs, key(pc))
	}
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(as, bs)
}
