package node

import (
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/kube"
	"github.com/wirelace/wirelace/daemon/mesh"
)

// fullResync is how long the reconcile trusts its memory of what it wrote
// to the device and the routing tables. Within it, a reconcile diffs the
// desired state against that memory and writes only the difference, so a
// change to one peer costs a few writes rather than a read of every
// WireGuard peer (over UAPI: the device prints every peer, wgctrl parses
// it) and every route (a netlink dump), which at 1000 peers was most of a
// reconcile. Once it has passed, and after any failed reconcile, the next
// one reads both back and so repairs drift (someone deleting one of our
// routes, say): a few localResync ticks, so that repair waits minutes at
// most, while the ticks in between cost next to nothing.
const fullResync = 2 * time.Minute

// reconcileCache is what the reconcile loop keeps between runs so that it
// does work proportional to what changed. Only the reconcile loop uses it,
// one run at a time, so it needs no lock.
type reconcileCache struct {
	// claims are the parsed MeshNodes by name, each valid for one
	// resourceVersion: parsing is pure, so an object the API server has
	// not changed parses the same. The result is still only a claim;
	// Desired checks it against the cluster's facts on every reconcile.
	claims map[string]parsedClaim

	// peers is the device's peers as last read or written; nil means
	// unknown, read the device.
	peers map[wgtypes.Key]mesh.AppliedPeer
	// routes are our routes per table as last listed or written; a table
	// that is absent is listed from the kernel.
	routes map[int][]netip.Prefix
	// readAt is when peers and routes were last read back.
	readAt time.Time

	// facts are the nodes' mesh.Facts as last gathered, each valid while
	// the node's kube.FactsVersion stays the same: gathering them means
	// parsing every node's IPClaims, pod CIDRs, grants and addresses.
	// factsOnLink is the on-link set they were gathered for (it decides
	// which node IPs count).
	facts       map[string]cachedFacts
	factsOnLink []netip.Prefix
	// desired computes the topology from the claims and facts, patching
	// the last one when only peers' keys or endpoints changed.
	desired mesh.DesiredCache
	// masq is what the masquerade rules were last applied from; ok is
	// false when unknown (never applied, or a failure since).
	masq struct {
		ok           bool
		gen          uint64 // desired.RoutesGen()
		local, pools []netip.Prefix
	}
}

type cachedFacts struct {
	version kube.FactsVersion
	podIPs  bool // gathered with pod IPs (the node announces chained pod IPs)
	live    bool // its Node exists; f means nothing otherwise
	f       mesh.Facts
}

type parsedClaim struct {
	resourceVersion string
	node            mesh.Node
	err             error
}

// parse returns mn parsed, from the cache when mn has not changed since it
// was last parsed. The Node returned shares its slices with the cache:
// Desired copies what it changes, and nothing else may modify them.
func (c *reconcileCache) parse(mn *v1alpha1.MeshNode) (mesh.Node, error) {
	if c.claims == nil {
		c.claims = map[string]parsedClaim{}
	}
	rv := mn.ResourceVersion
	if p, ok := c.claims[mn.Name]; ok && rv != "" && p.resourceVersion == rv {
		return p.node, p.err
	}
	n, err := mesh.ParseClaim(kube.MeshNodeClaim(mn))
	if rv != "" {
		c.claims[mn.Name] = parsedClaim{resourceVersion: rv, node: n, err: err}
	}
	return n, err
}

// keepClaims forgets the parsed claims of MeshNodes no longer in the
// cache.
func (c *reconcileCache) keepClaims(present map[string]bool) {
	for name := range c.claims {
		if !present[name] {
			delete(c.claims, name)
		}
	}
}

// startRun says whether this run must read the device and routes back
// (nothing remembered, or fullResync passed); if so it forgets them.
func (c *reconcileCache) startRun(now time.Time) (full bool) {
	if c.peers != nil && c.routes != nil && now.Sub(c.readAt) < fullResync {
		return false
	}
	c.forgetApplied()
	c.readAt = now
	// A full run derives everything anew, so that no cache outlives
	// fullResync.
	c.facts = nil
	c.desired.Reset()
	return true
}

// forgetApplied drops what was remembered of the device and routes, after
// a failure left them unknown.
func (c *reconcileCache) forgetApplied() {
	c.peers = nil
	c.routes = map[int][]netip.Prefix{}
	c.masq.ok = false
}

// routesApplied records table's routes after a write that succeeded:
// what was desired except what another owner holds (taken), which is not
// ours and which the next run tries again, as a listing would have it.
func (c *reconcileCache) routesApplied(table int, desired, taken []netip.Prefix) {
	ours := slices.Clone(desired)
	if len(taken) > 0 {
		ours = slices.DeleteFunc(ours, func(p netip.Prefix) bool { return slices.Contains(taken, p) })
	}
	c.routes[table] = ours
}
