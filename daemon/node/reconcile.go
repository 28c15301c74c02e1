package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/kube"
	"github.com/wirelace/wirelace/daemon/masq"
	"github.com/wirelace/wirelace/daemon/mesh"
	"github.com/wirelace/wirelace/daemon/routes"
)

// reconcile makes the world match the mesh: this node's MeshNode says what
// it is, and the device's peers and routes are exactly the other nodes'.
// It is idempotent and reads the API only through the informer caches.
//
// Between full resyncs (fullResync) it writes only what differs from what
// it wrote last, parses only MeshNodes that changed, gathers facts only
// for nodes an informer event touched, and patches the topology when only
// peers' keys or endpoints changed (reconcileCache, mesh.DesiredCache);
// the result is what a full reconcile would make. A failure makes the next
// run a full one, which drops all of that.
func (d *Daemon) reconcile(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			d.cache.forgetApplied()
		}
	}()
	self := d.cfg.NodeName
	node := d.watcher.Node(self)
	if node == nil {
		// Without its Node this node is leaving the cluster: publishing
		// again would resurrect a MeshNode that the garbage collector (or an
		// operator) just removed.
		d.setNotReady(fmt.Sprintf("Node %s no longer exists; this node has left the cluster", self))
		return nil
	}
	d.mu.Lock()
	d.node = node // a Node re-created under the same name has a new UID
	d.mu.Unlock()

	// One look at the host's addresses serves the published candidates and
	// the same-network test of the path machines.
	host, hostErr := hostAddrs(d.cfg.Interface)
	if hostErr != nil && len(host) == 0 {
		return hostErr
	}
	if hostErr != nil {
		d.log.Warn("some host addresses could not be read", "err", hostErr)
	}
	// What this node is, computed once, then applied: its MeshNode, the
	// candidates its path machines offer peers, its status.
	state, err := d.selfState(host)
	if err != nil {
		return err
	}
	spec, own, err := nodeSpec(state)
	if err != nil {
		return err
	}
	d.paths.setLocal(state.NAT.Type, own)
	d.mu.Lock()
	d.endpoints = endpointStrings(own)
	d.mu.Unlock()
	if err := d.publish(ctx, spec); err != nil {
		return err
	}

	meshNodes, errs := d.watcher.MeshNodes()
	for _, err := range errs {
		d.log.Warn("skipping undecodable MeshNode", "err", err)
	}
	// Sized up front: a mesh.Node is large, and growing a slice of 1000 of
	// them showed in a one-peer change's profile.
	nodes := make([]mesh.Node, 0, len(meshNodes))
	present := make(map[string]bool, len(meshNodes))
	for _, mn := range meshNodes {
		if mn.Name == self {
			continue
		}
		present[mn.Name] = true
		n, err := d.cache.parse(mn)
		if err != nil {
			d.log.Warn("skipping invalid MeshNode", "peer", mn.Name, "err", err)
			continue
		}
		nodes = append(nodes, n)
	}
	d.cache.keepClaims(present)
	d.notePortRival(state, nodes)
	if d.cache.startRun(time.Now()) {
		d.log.Debug("full resync: reading WireGuard peers and routes back")
	}
	onLink := subnetsOf(host)
	top := d.cache.desired.Update(d.self(onLink), nodes, d.facts(nodes, onLink))
	for _, c := range top.Conflicts {
		d.log.Warn("mesh conflict", "detail", c)
	}

	d.paths.update(top, d.cache.desired.Routes(), onLink)
	if err := d.applyPeers(top); err != nil {
		return err
	}
	// The steps below are independent: one failing (nftables, say) must not
	// keep the others, routes above all, from being applied. Each error is
	// reported and the reconcile retried.
	var applyErrs []error
	if d.cfg.Masquerade {
		applyErrs = append(applyErrs, d.applyMasq())
	}
	applyErrs = append(applyErrs, routes.EnsureAddrs(d.dev.Index(), d.meshIPs))
	applyErrs = append(applyErrs, d.syncRoutes("main", routes.MainTable, d.cache.desired.Routes()))
	applyErrs = append(applyErrs, d.syncNodeIPRoutes(d.cache.desired.NodeIPRoutes()))
	if err := errors.Join(applyErrs...); err != nil {
		return err
	}
	d.setReady()
	return nil
}

// facts gathers, for every node that has a Node object, what the cluster
// says about it (mesh.Facts): its IPClaims, allocated pod CIDRs and
// RouteGrants. Pod IPs are gathered only for nodes that announce chained
// pod IPs, the only claims they back. A node's facts are gathered again
// only when an informer event may have changed them (kube.FactsVersion)
// or the on-link networks changed; else they are the last run's.
func (d *Daemon) facts(nodes []mesh.Node, onLink []netip.Prefix) map[string]mesh.Facts {
	c := &d.cache
	if c.facts == nil || !slices.Equal(c.factsOnLink, onLink) {
		c.facts = make(map[string]cachedFacts, len(nodes))
		c.factsOnLink = slices.Clone(onLink)
	}
	out := make(map[string]mesh.Facts, len(nodes))
	for _, n := range nodes {
		// The version before the facts: see kube.Watcher.FactsVersion.
		v, podIPs := d.watcher.FactsVersion(n.Name), len(n.PodIPClaims) > 0
		cf, ok := c.facts[n.Name]
		if !ok || cf.version != v || cf.podIPs != podIPs {
			cf = cachedFacts{version: v, podIPs: podIPs}
			cf.f, cf.live = d.gatherFacts(n.Name, podIPs, onLink)
			c.facts[n.Name] = cf
		}
		if cf.live {
			out[n.Name] = cf.f
		}
	}
	if len(c.facts) > 2*len(nodes)+16 {
		// Nodes that left: forget them now and then, not every run.
		keep := make(map[string]bool, len(nodes))
		for _, n := range nodes {
			keep[n.Name] = true
		}
		maps.DeleteFunc(c.facts, func(name string, _ cachedFacts) bool { return !keep[name] })
	}
	return out
}

// gatherFacts reads what the cluster says about one node from the
// informer caches; live is false when its Node does not exist.
func (d *Daemon) gatherFacts(name string, podIPs bool, onLink []netip.Prefix) (f mesh.Facts, live bool) {
	if !d.watcher.NodeExists(name) {
		return f, false
	}
	meshIPs, claimed := d.watcher.Claims(name)
	f = mesh.Facts{
		MeshIPs:  meshIPs,
		PodCIDRs: append(d.watcher.NodePodCIDRs(name), claimed...),
		Grants:   d.watcher.Grants(name),
	}
	if podIPs {
		f.PodIPs = d.watcher.PodIPs(name)
	}
	if d.cfg.NodeIPRoutes {
		for _, a := range d.watcher.InternalIPs(name) {
			// On a network this node shares, the address is reached
			// directly; through the mesh would only add a detour.
			if !containsAddr(onLink, a) {
				f.NodeIPs = append(f.NodeIPs, a)
			}
		}
	}
	return f, true
}

// syncRoutes applies one table's routes and logs what changed. A route
// another owner holds for the same destination is left alone and warned
// about once per reconcile that finds it.
//
// What the table holds comes from the cache when known (see fullResync),
// else from a listing of our routes.
func (d *Daemon) syncRoutes(name string, table int, desired []netip.Prefix) error {
	actual, known := d.cache.routes[table]
	if !known {
		var err error
		if actual, err = routes.List(d.dev.Index(), table); err != nil {
			return err
		}
	}
	if known && slices.Equal(desired, actual) {
		// What the table holds is already what is desired: the usual
		// case when one peer's key changed. RouteChanges would find as
		// much, through two maps of every route.
		return nil
	}
	add, del := mesh.RouteChanges(desired, actual)
	added, removed, taken, err := routes.Apply(d.dev.Index(), table, add, del)
	if err != nil {
		delete(d.cache.routes, table) // some writes failed: list next time
	} else {
		d.cache.routesApplied(table, desired, taken)
	}
	if len(added)+len(removed) > 0 {
		d.log.Info("routes changed", "table", name, "added", added, "removed", removed)
	}
	if len(taken) > 0 {
		d.log.Warn("not routing prefixes through the mesh: the node already has routes to them that Wirelace did not create",
			"table", name, "prefixes", taken)
	}
	return err
}

// syncNodeIPRoutes applies the node-IP table and its policy rule, or
// removes both when node-IP routing is off.
func (d *Daemon) syncNodeIPRoutes(desired []netip.Prefix) error {
	if !d.cfg.NodeIPRoutes {
		return errors.Join(
			d.syncRoutes("node-ip", d.cfg.RouteTable, nil),
			routes.DeleteRule(d.cfg.RouteTable, d.cfg.FwMark))
	}
	// Rule first: routes in the table mean nothing until it points there,
	// and WireGuard's socket is marked from the start.
	if err := routes.EnsureRule(d.cfg.RouteTable, d.cfg.FwMark); err != nil {
		return err
	}
	return d.syncRoutes("node-ip", d.cfg.RouteTable, desired)
}

// applyPeers writes the device's peers that differ from top. What the
// device holds comes from the cache when known (see fullResync): reading
// it over UAPI means the device printing, and wgctrl parsing, every peer.
func (d *Daemon) applyPeers(top mesh.Topology) error {
	if d.cache.peers == nil {
		actual, err := d.dev.Peers()
		if err != nil {
			return fmt.Errorf("read WireGuard peers: %w", err)
		}
		d.cache.peers = mesh.AppliedPeers(actual)
	}
	names := make(map[string]string, len(top.Peers))
	for _, p := range top.Peers {
		names[p.PublicKey.String()] = p.Name
	}
	cfg := mesh.PeerChangesFrom(top.Peers, d.cache.peers, d.bind.PeerEndpoint)
	if len(cfg.Peers) > 0 {
		if err := d.dev.Configure(cfg); err != nil {
			// Part of it may have been applied: read the device next time.
			d.cache.peers = nil
			return fmt.Errorf("configure WireGuard peers: %w", err)
		}
		mesh.RecordConfig(d.cache.peers, cfg)
		d.metrics.peerWrites.Add(float64(len(cfg.Peers)))
		for _, pc := range cfg.Peers {
			switch {
			case pc.Remove:
				d.log.Info("peer removed", "peer", d.peerName(pc.PublicKey.String()), "key", pc.PublicKey.String())
			default:
				d.log.Info("peer configured", "peer", names[pc.PublicKey.String()], "endpoint", pc.Endpoint, "allowed_ips", len(pc.AllowedIPs))
			}
		}
	}
	d.mu.Lock()
	d.peerNames = names
	d.mu.Unlock()
	return nil
}

// publish writes this node's MeshNode when spec differs from what the
// cache holds (a first start, a new address, or someone deleted it).
// Comparing with the cache first means a quiet cluster costs no requests
// at all.
func (d *Daemon) publish(ctx context.Context, spec v1alpha1.MeshNodeSpec) error {
	cur := d.watcher.MeshNode(d.cfg.NodeName)
	if cur != nil && reflect.DeepEqual(cur.Spec, spec) && ownedBy(cur.OwnerReferences, d.currentNode()) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, apiCallTimeout)
	defer cancel()
	if err := kube.PublishMeshNode(ctx, d.clients, d.currentNode(), spec); err != nil {
		return err
	}
	d.log.Info("published MeshNode", "node", d.cfg.NodeName, "endpoints", spec.Endpoints)
	return nil
}

// ownedBy says whether refs is exactly node as owner (a Node re-created
// under the same name has a new UID).
func ownedBy(refs []metav1.OwnerReference, node *corev1.Node) bool {
	return len(refs) == 1 && refs[0].UID == node.UID
}

// selfState gathers what this node's MeshNode is made of (see nodeSpec):
// its keys, addresses, pods, grants, NAT and host addresses, as values.
func (d *Daemon) selfState(host []netip.Prefix) (selfState, error) {
	s := selfState{
		WireGuardKey: d.keys.WireGuard.PublicKey(),
		ControlKey:   d.keys.Control.PublicKey(),
		MeshIPs:      d.meshIPs,
		PodCIDRs:     d.podCIDRs,
		Host:         addrsOf(host),
		Port:         uint16(d.bind.Port()),
	}
	var err error
	if s.Chained, err = d.chainedAddrs(); err != nil {
		return s, err
	}
	if s.Advertised, err = d.cfg.AdvertisePrefixes(); err != nil {
		return s, err
	}
	if d.cfg.AdvertiseGrantedCIDRs {
		s.Granted = d.watcher.Grants(d.cfg.NodeName)
	}
	if s.Configured, err = d.cfg.ConfiguredEndpoints(); err != nil {
		return s, err
	}
	if s.MeshPools, err = d.cfg.MeshPools(); err != nil {
		return s, err
	}
	d.mu.Lock()
	s.NAT = d.nat
	d.mu.Unlock()
	return s, nil
}

// peerName is the node name last seen for a public key, for logs.
func (d *Daemon) peerName(key string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.peerNames[key]
}

// applyMasq applies the masquerade rules unless what they are made of is
// what they were last applied from: building them sorts and merges every
// routed prefix, which a change of one peer's key leaves as it was.
func (d *Daemon) applyMasq() error {
	m := &d.cache.masq
	gen := d.cache.desired.RoutesGen()
	pools, _ := d.cfg.MeshPools()
	if m.ok && m.gen == gen && slices.Equal(m.local, d.podCIDRs) && slices.Equal(m.pools, pools) {
		return nil
	}
	m.ok = false
	if err := d.masq.Apply(d.masqRules(d.cache.desired.Routes())); err != nil {
		return err
	}
	m.ok, m.gen, m.local, m.pools = true, gen, slices.Clone(d.podCIDRs), slices.Clone(pools)
	return nil
}

// masqRules says which pod traffic leaves the cluster: anything from this
// node's pods to an address that is not a pod or mesh address of any node.
// Only what the topology accepted counts: a peer's unverified claims must
// not exempt traffic from masquerading.
func (d *Daemon) masqRules(routed []netip.Prefix) masq.Rules {
	r := masq.Rules{Local: d.podCIDRs}
	r.Cluster = append(r.Cluster, d.podCIDRs...)
	if pools, err := d.cfg.MeshPools(); err == nil {
		r.Cluster = append(r.Cluster, pools...)
	}
	r.Cluster = append(r.Cluster, routed...)
	return r
}
