package mesh

import (
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/vocab"
)

// DesiredCache computes Desired again and again as nodes change, doing
// work proportional to what changed in the common case: a peer replacing
// its WireGuard key, control key, endpoints or NAT type.
//
// Such a change cannot move a prefix: Desired hands out prefixes by name
// and claim, and a key matters only in deciding which nodes are peers at
// all (a key used twice makes neither a peer). So when the same nodes are
// peers as before, with the same claims and facts, every peer keeps its
// AllowedIPs and NodeIPs, the routed set is the same, and only the changed
// peers' own fields and endpoints (checked against that routed set, as
// dropTunnelledEndpoints does) need computing. Anything else (a node
// joining or leaving, a claim or fact changing, a key colliding, self
// changing) is computed by Desired from scratch. Either way the result is
// exactly Desired's, conflicts included and in the same order; the
// randomized test in incremental_test.go checks that.
//
// The zero value is ready to use. A DesiredCache is not safe for
// concurrent use.
type DesiredCache struct {
	valid bool
	self  Self
	// in is what each node looked like at the last Update, by name, and
	// where it is in top.Peers (-1 if it is not a peer).
	in  map[string]*cachedNode
	run uint64 // stamps cachedNode.seen to spot removed nodes and duplicates
	top Topology
	// admitted is top.Conflicts up to the endpoint checks; endpoints is,
	// per peer, the endpoint conflicts that follow them.
	admitted  []string
	endpoints [][]string
	// users is, for every live node other than self, who uses each key.
	users  map[wgtypes.Key][]string
	routed routeSet
	// routes and nodeIPRoutes are top.Routes() and top.NodeIPRoutes(),
	// computed at most once per peer set.
	routes, nodeIPRoutes []netip.Prefix
	routesOK             bool
	// gen changes whenever the routes may have (RoutesGen).
	gen uint64
	// full says whether the last Update computed from scratch.
	full bool
}

type cachedNode struct {
	node  Node // as given, claims unchecked
	facts Facts
	live  bool
	peer  int
	seen  uint64
}

// Reset forgets everything: the next Update computes from scratch.
func (c *DesiredCache) Reset() { *c = DesiredCache{run: c.run, gen: c.gen + 1} }

// RoutesGen identifies the current Routes and NodeIPRoutes: it is the
// same only as long as they are, so that a caller may skip work derived
// from them. (It may change when they did not.)
func (c *DesiredCache) RoutesGen() uint64 { return c.gen }

// LastWasFull says whether the last Update computed Desired from scratch.
func (c *DesiredCache) LastWasFull() bool { return c.full }

// Update returns Desired(self, nodes, facts). The Topology returned, its
// peers and their slices are the cache's own until the next Update or
// Reset: callers must not modify them. nodes must not be modified either
// until the next Update (the reconcile's parsed claims are not).
func (c *DesiredCache) Update(self Self, nodes []Node, facts map[string]Facts) Topology {
	if changed, ok := c.changedPeers(self, nodes, facts); ok {
		c.full = false
		c.patch(changed)
		return c.top
	}
	c.full = true
	c.rebuild(self, nodes, facts)
	return c.top
}

// Routes is the last Topology's Routes(), computed once per change of the
// routed set. Callers must not modify it.
func (c *DesiredCache) Routes() []netip.Prefix {
	c.ensureRoutes()
	return c.routes
}

// NodeIPRoutes is the last Topology's NodeIPRoutes(), like Routes.
func (c *DesiredCache) NodeIPRoutes() []netip.Prefix {
	c.ensureRoutes()
	return c.nodeIPRoutes
}

func (c *DesiredCache) ensureRoutes() {
	if !c.routesOK {
		c.routes, c.nodeIPRoutes, c.routesOK = c.top.Routes(), c.top.NodeIPRoutes(), true
	}
}

// changedPeers returns the indexes in c.top.Peers of the nodes that
// changed since the last Update, when every change is one patch can
// apply: same nodes, same claims and facts, only peers' keys, endpoints
// or NAT type changed, and every peer still a peer. ok is false when a
// full computation is needed.
func (c *DesiredCache) changedPeers(self Self, nodes []Node, facts map[string]Facts) (changed []int, ok bool) {
	if !c.valid || !sameSelf(c.self, self) || len(nodes) != len(c.in) {
		return nil, false
	}
	c.run++
	for i := range nodes {
		n := &nodes[i]
		e := c.in[n.Name]
		if e == nil || e.seen == c.run {
			return nil, false // a new node, or a name given twice
		}
		e.seen = c.run
		f, live := facts[n.Name]
		if live != e.live || !sameFacts(f, e.facts) || !sameClaims(*n, e.node) {
			return nil, false
		}
		if sameIdentity(*n, e.node) {
			continue
		}
		if e.peer < 0 {
			return nil, false // it may become a peer
		}
		changed = append(changed, e.peer)
	}
	if len(changed) == 0 {
		return nil, true
	}
	// Every changed peer's new key must be its own: not self's, not
	// another live node's, old or new.
	next := make(map[wgtypes.Key]string, len(changed))
	for _, i := range changed {
		p := &c.top.Peers[i]
		nk := nodeByName(nodes, p.Name).PublicKey
		if nk == self.PublicKey {
			return nil, false
		}
		if other, dup := next[nk]; dup && other != p.Name {
			return nil, false
		}
		next[nk] = p.Name
		for _, u := range c.users[nk] {
			if u == p.Name {
				continue
			}
			// u used nk at the last Update: fine only if u is also
			// changing away from it.
			if o := c.in[u]; o.peer < 0 || !slices.Contains(changed, o.peer) || nodeByName(nodes, u).PublicKey == nk {
				return nil, false
			}
		}
	}
	// Apply the new nodes' identities to the inputs now that the patch
	// is certain.
	for _, i := range changed {
		name := c.top.Peers[i].Name
		e := c.in[name]
		old := e.node.PublicKey
		e.node = *nodeByName(nodes, name)
		c.users[old] = slices.DeleteFunc(c.users[old], func(s string) bool { return s == name })
		if len(c.users[old]) == 0 {
			delete(c.users, old)
		}
	}
	for _, i := range changed {
		name := c.top.Peers[i].Name
		k := c.in[name].node.PublicKey
		c.users[k] = append(c.users[k], name)
	}
	return changed, true
}

// nodeByName finds a node; changedPeers looks up only the few that
// changed, so a scan is cheaper than a map of every node.
func nodeByName(nodes []Node, name string) *Node {
	for i := range nodes {
		if nodes[i].Name == name {
			return &nodes[i]
		}
	}
	return nil
}

// patch recomputes the changed peers' own fields and endpoints; their
// prefixes, and every other peer, stay as they were.
func (c *DesiredCache) patch(changed []int) {
	if len(changed) == 0 {
		return
	}
	for _, i := range changed {
		p := &c.top.Peers[i]
		n := c.in[p.Name].node
		p.PublicKey, p.ControlKey, p.NATType = n.PublicKey, n.ControlKey, n.NATType
		p.Endpoints, p.EndpointKinds, c.endpoints[i] = c.routed.checkEndpoints(n.Name, n.Endpoints, n.EndpointKinds)
	}
	c.top.Conflicts = c.conflicts()
}

// rebuild computes Desired from scratch and remembers its inputs.
func (c *DesiredCache) rebuild(self Self, nodes []Node, facts map[string]Facts) {
	*c = DesiredCache{run: c.run, gen: c.gen + 1}
	c.valid = true
	c.self = Self{Name: self.Name, PublicKey: self.PublicKey, Protected: slices.Clone(self.Protected)}
	t, admitted, endpoints, routed := desired(self, nodes, facts)
	c.top, c.admitted, c.endpoints, c.routed = t, admitted, endpoints, routed
	c.in = make(map[string]*cachedNode, len(nodes))
	c.users = make(map[wgtypes.Key][]string, len(nodes))
	for _, n := range nodes {
		f, live := facts[n.Name]
		c.in[n.Name] = &cachedNode{node: n, facts: f, live: live, peer: -1}
		if live && n.Name != self.Name {
			c.users[n.PublicKey] = append(c.users[n.PublicKey], n.Name)
		}
	}
	for i, p := range t.Peers {
		c.in[p.Name].peer = i
	}
}

// conflicts puts top.Conflicts together as Desired orders them: the
// admission's, then each peer's endpoints' in peer order.
func (c *DesiredCache) conflicts() []string {
	out := slices.Clip(c.admitted)
	for _, e := range c.endpoints {
		out = append(out, e...)
	}
	return out
}

func sameSelf(a, b Self) bool {
	return a.Name == b.Name && a.PublicKey == b.PublicKey && slices.Equal(a.Protected, b.Protected)
}

// sameClaims compares what Desired checks and hands out by name: the
// claims. (Name is equal by construction.)
func sameClaims(a, b Node) bool {
	return slices.Equal(a.MeshIPClaims, b.MeshIPClaims) &&
		slices.Equal(a.PodCIDRClaims, b.PodCIDRClaims) &&
		slices.Equal(a.PodIPClaims, b.PodIPClaims) &&
		slices.Equal(a.AdvertisedClaims, b.AdvertisedClaims) &&
		slices.Equal(a.AllowedIPs, b.AllowedIPs) &&
		slices.Equal(a.NodeIPs, b.NodeIPs)
}

// sameIdentity compares the rest of a Node: what a peer carries through
// Desired unchecked, or checks only against the routed set (endpoints).
func sameIdentity(a, b Node) bool {
	return a.PublicKey == b.PublicKey && a.ControlKey == b.ControlKey && a.NATType == b.NATType &&
		slices.Equal(a.Endpoints, b.Endpoints) && slices.Equal(a.EndpointKinds, b.EndpointKinds)
}

func sameFacts(a, b Facts) bool {
	if !slices.Equal(a.MeshIPs, b.MeshIPs) || !slices.Equal(a.PodCIDRs, b.PodCIDRs) ||
		!slices.Equal(a.Grants, b.Grants) || !slices.Equal(a.NodeIPs, b.NodeIPs) ||
		len(a.PodIPs) != len(b.PodIPs) || (a.PodIPs == nil) != (b.PodIPs == nil) {
		return false
	}
	for k, v := range a.PodIPs {
		if w, ok := b.PodIPs[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkEndpoints is dropTunnelledEndpoints for one peer: its endpoints
// that lie outside the routed set, their kinds, and a conflict for each
// one dropped.
func (r routeSet) checkEndpoints(name string, endpoints []netip.AddrPort, kinds []vocab.EndpointKind) ([]netip.AddrPort, []vocab.EndpointKind, []string) {
	var t Topology
	var eps []netip.AddrPort
	var ks []vocab.EndpointKind
	for j, ep := range endpoints {
		if p, in := r.containing(ep.Addr()); in {
			t.conflict("node %s publishes endpoint %s inside %s, which is routed through the mesh; not used", name, ep, p)
			continue
		}
		eps = append(eps, ep)
		if j < len(kinds) {
			ks = append(ks, kinds[j])
		}
	}
	return eps, ks, t.Conflicts
}
