package node

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/wirelace/wirelace/daemon/api"
	"github.com/wirelace/wirelace/ipam"
	"github.com/wirelace/wirelace/netconf"
)

// Chained mode's local API (api.Backend): the plugin, chained after a
// primary CNI, registers the addresses the primary gave a pod. The daemon
// routes them: those outside this node's pod CIDRs are announced in its
// MeshNode (aggregated), for peers to verify and route.

// Register implements api.Backend.
func (d *Daemon) Register(_ context.Context, r netconf.RegisterRequest) (netconf.RegisterResponse, error) {
	mtu := d.podMTU()
	if mtu == 0 {
		return netconf.RegisterResponse{}, fmt.Errorf("%w: the WireGuard device is not up yet", api.ErrNotReady)
	}
	reg := ipam.Registration{
		Network: r.Network,
		Key:     ipam.Key(r.AttachmentKey),
		Owner:   ipam.Owner{Netns: r.Netns, PodNamespace: r.PodNamespace, PodName: r.PodName, PodUID: r.PodUID},
	}
	for _, s := range r.IPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netconf.RegisterResponse{}, fmt.Errorf("%w: address %q: %v", api.ErrInvalid, s, err)
		}
		reg.IPs = append(reg.IPs, a)
	}
	changed, err := d.ipam.Register(reg)
	if err != nil {
		return netconf.RegisterResponse{}, ipamError(err)
	}
	if changed {
		d.log.Info("registered chained pod", "network", r.Network, "container", short(r.ContainerID), "if", r.IfName,
			"pod", r.PodNamespace+"/"+r.PodName, "ips", r.IPs)
		d.trigger()
	}
	return netconf.RegisterResponse{MTU: mtu}, nil
}

// ReleaseChained implements api.Backend.
func (d *Daemon) ReleaseChained(_ context.Context, r netconf.ChainedReleaseRequest) error {
	found, err := d.ipam.Unregister(r.Network, ipam.Key(r.AttachmentKey))
	if found {
		d.log.Info("released chained pod", "network", r.Network, "container", short(r.ContainerID), "if", r.IfName)
		d.trigger()
	}
	return ipamError(err)
}

// GCChained implements api.Backend.
func (d *Daemon) GCChained(_ context.Context, r netconf.ChainedGCRequest) (netconf.GCResponse, error) {
	valid := make([]ipam.Key, 0, len(r.Valid))
	for _, k := range r.Valid {
		valid = append(valid, ipam.Key(k))
	}
	removed, err := d.ipam.GCRegistrations(r.Network, valid)
	resp := netconf.GCResponse{Released: []netconf.AttachmentKey{}}
	for _, reg := range removed {
		resp.Released = append(resp.Released, netconf.AttachmentKey(reg.Key))
	}
	if len(removed) > 0 {
		d.log.Info("garbage-collected chained pods", "network", r.Network, "released", len(removed))
		d.trigger()
	}
	return resp, ipamError(err)
}

// Registrations implements api.Backend.
func (d *Daemon) Registrations() (netconf.ChainedListResponse, error) {
	list, err := d.ipam.Registrations()
	if err != nil {
		return netconf.ChainedListResponse{}, err
	}
	resp := netconf.ChainedListResponse{Registrations: make([]netconf.Registration, 0, len(list))}
	for _, r := range list {
		ips := make([]string, 0, len(r.IPs))
		for _, a := range r.IPs {
			ips = append(ips, a.String())
		}
		resp.Registrations = append(resp.Registrations, netconf.Registration{
			RegisterRequest: netconf.RegisterRequest{
				Network:       r.Network,
				AttachmentKey: netconf.AttachmentKey(r.Key),
				IPs:           ips,
				Netns:         r.Netns,
				PodNamespace:  r.PodNamespace,
				PodName:       r.PodName,
				PodUID:        r.PodUID,
			},
			Created: r.Created.UTC().Format(time.RFC3339),
		})
	}
	return resp, nil
}

// chainedAddrs are the registered addresses outside this node's pod
// CIDRs: what the node must announce for peers to route.
func (d *Daemon) chainedAddrs() ([]netip.Addr, error) {
	list, err := d.ipam.Registrations()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, r := range list {
		for _, a := range r.IPs {
			if !containsAddr(d.podCIDRs, a) {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// releasePending carries out the releases that plugins recorded while the
// daemon was down (see netconf.PendingRelease). A release that fails stays
// for the next round.
func (d *Daemon) releasePending() error {
	files, bad, err := netconf.ReadPendingReleases(d.cfg.Socket)
	if err != nil {
		return err
	}
	for _, path := range bad {
		d.log.Warn("removing an unreadable pending-release file", "file", path)
		if err := os.Remove(path); err != nil {
			d.log.Warn("remove pending-release file", "file", path, "err", err)
		}
	}
	for _, f := range files {
		var err error
		if f.Chained {
			err = d.ReleaseChained(context.Background(), netconf.ChainedReleaseRequest{Network: f.Network, AttachmentKey: f.AttachmentKey})
		} else {
			err = d.Release(context.Background(), f.AttachmentKey)
		}
		if err != nil {
			d.log.Warn("pending release failed; will retry", "container", short(f.ContainerID), "if", f.IfName, "err", err)
			continue
		}
		d.log.Info("carried out a release recorded while the daemon was down", "container", short(f.ContainerID), "if", f.IfName, "chained", f.Chained)
		if err := os.Remove(f.Path); err != nil {
			d.log.Warn("remove pending-release file", "file", f.Path, "err", err)
		}
	}
	return nil
}
