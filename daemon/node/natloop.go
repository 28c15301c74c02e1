package node

import (
	"context"
	"slices"
	"time"
)

// natRefresh is how often the node re-checks its NAT with STUN: mappings
// and even NAT types change (a router reboot, a failover to another
// gateway), and a stale server-reflexive candidate costs failed probes.
const natRefresh = 5 * time.Minute

// natLoop classifies the node's NAT with STUN from the WireGuard socket
// itself (so the mapping learnt is WireGuard's), publishes the result and
// hands it to the path machines.
func (d *Daemon) natLoop(ctx context.Context) {
	servers, _ := d.cfg.STUNAddrs()
	if len(servers) == 0 {
		d.log.Info("no STUN servers configured: NAT type unknown, publishing host endpoints only")
		return
	}
	for {
		host, _ := hostAddrs(d.cfg.Interface)
		res, err := d.paths.stun.Classify(ctx, servers, addrsOf(host))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.log.Warn("NAT classification failed", "err", err)
		} else {
			d.mu.Lock()
			changed := d.nat.Type != res.Type || !slices.Equal(d.nat.Mapped, res.Mapped)
			d.nat = res
			d.mu.Unlock()
			if changed {
				d.log.Info("NAT classified", "type", res.Type, "mapped", res.Mapped, "reason", res.Reason)
			}
			d.trigger() // publish the new type and candidates, tell the path machines
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(natRefresh):
		}
	}
}
