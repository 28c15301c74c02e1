package node

import (
	"context"
	"net/netip"
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
		addrs, _ := hostAddrs(d.cfg.Interface)
		res, err := d.paths.stun.Classify(ctx, servers, addrs)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.log.Warn("NAT classification failed", "err", err)
		} else {
			d.mu.Lock()
			changed := d.nat.Type != res.Type || !sameAddrPorts(d.nat.Mapped, res.Mapped)
			d.nat = res
			d.mu.Unlock()
			if changed {
				d.log.Info("NAT classified", "type", res.Type, "mapped", res.Mapped, "reason", res.Reason)
			}
			spec, err := d.spec()
			if err == nil {
				var own []netip.AddrPort
				for _, e := range spec.Endpoints {
					if ap, err := netip.ParseAddrPort(e.Address); err == nil {
						own = append(own, ap)
					}
				}
				d.paths.setLocal(res.Type, own)
			}
			d.trigger() // publish the new type and candidates
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(natRefresh):
		}
	}
}

func sameAddrPorts(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
