package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"time"

	"sigs.k8s.io/yaml"
)

// Topology is a lab scenario in a few lines of YAML:
//
//	relays: [relay1, relay2]
//	sites:
//	  home: cone            # cone | symmetric | udp-blocked
//	  cloud: symmetric
//	nodes:
//	  pub: {}               # a public address on the internet
//	  a1: {site: home}
//	  f1: {site: home, portForward: 51820}   # reachable through a port-forward
//	  a2: {site: home, annotations: {wirelace.io/listen-port: "51821"}}
type Topology struct {
	Relays []string            `json:"relays"`
	Sites  map[string]NAT      `json:"sites"`
	Nodes  map[string]TopoNode `json:"nodes"`
	// CiliumNodes installs a stand-in of Cilium's CiliumNode CRD and gives
	// every node with a primary CNI a CiliumNode whose spec.ipam.podCIDRs
	// are its primary's ranges, as Cilium's operator would.
	CiliumNodes bool `json:"ciliumNodes"`
}

// TopoNode places one node.
type TopoNode struct {
	// Site is the node's site; empty puts it on the internet directly.
	Site string `json:"site"`
	// PortForward forwards this UDP port of the site's router to the node,
	// which publishes it as a configured endpoint.
	PortForward int `json:"portForward"`
	// Args are extra wirelaced flags.
	Args []string `json:"args"`
	// Annotations go on the node's Node object (wirelace.io/listen-port,
	// say), as an operator would set them.
	Annotations map[string]string `json:"annotations"`
	// Primary is a stand-in primary CNI ("bridge" or "ptp", with
	// host-local) that wirelace is chained after; empty: standalone.
	Primary PrimaryCNI `json:"primary"`
}

// LoadTopology reads a topology file; unknown keys and NAT kinds are errors.
func LoadTopology(path string) (Topology, error) {
	var t Topology
	b, err := os.ReadFile(path)
	if err != nil {
		return t, err
	}
	if err := yaml.UnmarshalStrict(b, &t); err != nil {
		return t, fmt.Errorf("topology %s: %w", path, err)
	}
	for name, kind := range t.Sites {
		switch kind {
		case NATCone, NATSymmetric, NATUDPBlocked:
		default:
			return t, fmt.Errorf("topology %s: site %s has NAT %q; want cone, symmetric or udp-blocked", path, name, kind)
		}
	}
	for name, n := range t.Nodes {
		if _, ok := t.Sites[n.Site]; n.Site != "" && !ok {
			return t, fmt.Errorf("topology %s: node %s is in unknown site %q", path, name, n.Site)
		}
		switch n.Primary {
		case "", PrimaryBridge, PrimaryPTP:
		default:
			return t, fmt.Errorf("topology %s: node %s has primary %q; want bridge or ptp", path, name, n.Primary)
		}
		if n.PortForward != 0 && n.Site == "" {
			return t, fmt.Errorf("topology %s: node %s has a port-forward but no site", path, name)
		}
	}
	return t, nil
}

// Built is what Build made, by name.
type Built struct {
	Relays map[string]*Relay
	Sites  map[string]*Site
	Nodes  map[string]*Node
}

// Build creates the topology's relays, sites and nodes (in name order, so
// addresses are the same every run), starts every node's daemon and waits
// until all are ready.
func (l *Lab) Build(ctx context.Context, t Topology) (*Built, error) {
	b := &Built{Relays: map[string]*Relay{}, Sites: map[string]*Site{}, Nodes: map[string]*Node{}}
	for _, name := range t.Relays {
		r, err := l.AddRelay(ctx, name)
		if err != nil {
			return nil, err
		}
		b.Relays[name] = r
	}
	for _, name := range sortedKeys(t.Sites) {
		s, err := l.AddSite(ctx, name, t.Sites[name])
		if err != nil {
			return nil, err
		}
		b.Sites[name] = s
	}
	names := sortedKeys(t.Nodes)
	for _, name := range names {
		var opts []NodeOption
		if site := t.Nodes[name].Site; site != "" {
			opts = append(opts, InSite(b.Sites[site]))
		}
		if p := t.Nodes[name].Primary; p != "" {
			opts = append(opts, WithPrimary(p))
		}
		if a := t.Nodes[name].Annotations; len(a) > 0 {
			opts = append(opts, WithAnnotations(a))
		}
		n, err := l.AddNode(ctx, name, opts...)
		if err != nil {
			return nil, err
		}
		b.Nodes[name] = n
	}
	if t.CiliumNodes {
		if err := l.AddCiliumNodes(ctx, b.Nodes); err != nil {
			return nil, err
		}
	}
	for _, name := range names {
		tn, n := t.Nodes[name], b.Nodes[name]
		args := tn.Args
		if tn.PortForward != 0 {
			site := b.Sites[tn.Site]
			if err := site.PortForward(ctx, n, tn.PortForward); err != nil {
				return nil, err
			}
			args = append(args, "--endpoints", netip.AddrPortFrom(site.WAN, uint16(tn.PortForward)).String())
		}
		if err := n.Start(args...); err != nil {
			return nil, err
		}
	}
	for _, name := range names {
		if err := b.Nodes[name].WaitReady(ctx, 30*time.Second); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
