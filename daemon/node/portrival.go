package node

import (
	"fmt"
	"net/netip"

	"github.com/wirelace/wirelace/api/vocab"
	"github.com/wirelace/wirelace/daemon/config"
	"github.com/wirelace/wirelace/daemon/mesh"
	"github.com/wirelace/wirelace/daemon/nat"
)

// portRival finds a peer that listens on this node's port behind this
// node's NAT: one that publishes, as what STUN saw of it, this node's
// public address with this node's own port. Behind a router that keeps
// source ports (Linux masquerade, most home routers), two such nodes
// collide: the router keeps the port toward a destination for whichever
// reached it first, and gives the other a new one. The other then looks
// symmetric, or cone on a port that only holds toward some destinations,
// and its hole punching depends on who probed a peer first. Every outcome
// leaves at least one of the two seeing the other here: the one that lost
// both STUN servers sees the winner's port; two that each won one look
// symmetric and publish their own port, so each sees the other. The NAT's
// classification alone cannot tell: it sees neither the other node nor
// whether a symmetric verdict is a collision. A MeshNode is only a claim:
// a false one costs this hint, which changes nothing else.
func portRival(self nat.Result, port uint16, nodes []mesh.Node) (string, netip.AddrPort) {
	if port == 0 || len(self.Mapped) == 0 {
		return "", netip.AddrPort{}
	}
	for _, n := range nodes {
		for i, ep := range n.Endpoints {
			if n.EndpointKinds[i] != vocab.EndpointSTUN || ep.Port() != port {
				continue
			}
			for _, m := range self.Mapped {
				if m.Addr() == ep.Addr() {
					return n.Name, ep
				}
			}
		}
	}
	return "", netip.AddrPort{}
}

// notePortRival records (for the status) and logs, once, a peer found by
// portRival.
func (d *Daemon) notePortRival(s selfState, nodes []mesh.Node) {
	hint := ""
	rival, ep := portRival(s.NAT, s.Port, nodes)
	if rival != "" {
		hint = fmt.Sprintf("node %s also listens on port %d behind this node's NAT (it publishes %s), which keeps a port toward a destination for one of them only; nodes behind one NAT need different listen ports (annotation %s)",
			rival, ep.Port(), ep, config.ListenPortAnnotation)
	}
	d.mu.Lock()
	changed := hint != d.portRival
	d.portRival = hint
	d.mu.Unlock()
	if changed && hint != "" {
		d.log.Warn("another node listens on this node's port behind its NAT", "peer", rival, "endpoint", ep, "detail", hint)
	}
}
