package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wirelace/wirelace/daemon/api"
	"github.com/wirelace/wirelace/ipam"
	"github.com/wirelace/wirelace/netconf"
)

// The local API's pod-address calls (api.Backend). The daemon owns every
// allocation in its bbolt store; the plugins only ask.

// Allocate implements api.Backend.
func (d *Daemon) Allocate(_ context.Context, r netconf.AllocateRequest) (netconf.AllocateResponse, error) {
	// The answer carries the MTU pods must use: without the device there
	// is none yet, and the plugin must try again rather than guess.
	mtu := d.podMTU()
	if mtu == 0 {
		return netconf.AllocateResponse{}, fmt.Errorf("%w: the WireGuard device is not up yet", api.ErrNotReady)
	}
	a, err := d.ipam.Allocate(ipam.Key(r.AttachmentKey), ownerOf(r))
	if err != nil {
		return netconf.AllocateResponse{}, ipamError(err)
	}
	d.log.Info("allocated pod addresses", "container", short(r.ContainerID), "if", r.IfName,
		"pod", r.PodNamespace+"/"+r.PodName, "ips", a.IPs)
	return netconf.AllocateResponse{IPs: allocatedIPs(a), MTU: mtu}, nil
}

// Release implements api.Backend.
func (d *Daemon) Release(_ context.Context, key netconf.AttachmentKey) error {
	released, err := d.ipam.Release(ipam.Key(key))
	if released {
		d.log.Info("released pod addresses", "container", short(key.ContainerID), "if", key.IfName)
	}
	return ipamError(err)
}

// GC implements api.Backend.
func (d *Daemon) GC(_ context.Context, r netconf.GCRequest) (netconf.GCResponse, error) {
	keys := make([]ipam.Key, 0, len(r.Valid))
	for _, k := range r.Valid {
		keys = append(keys, ipam.Key(k))
	}
	released, err := d.ipam.GC(r.Network, keys)
	resp := netconf.GCResponse{Released: []netconf.AttachmentKey{}}
	for _, a := range released {
		resp.Released = append(resp.Released, netconf.AttachmentKey(a.Key))
	}
	if len(released) > 0 {
		d.log.Info("garbage-collected pod addresses", "network", r.Network, "released", len(released))
	}
	return resp, ipamError(err)
}

// Allocations implements api.Backend.
func (d *Daemon) Allocations() (netconf.ListResponse, error) {
	list, err := d.ipam.List()
	if err != nil {
		return netconf.ListResponse{}, err
	}
	resp := netconf.ListResponse{Allocations: make([]netconf.Allocation, 0, len(list))}
	for _, a := range list {
		resp.Allocations = append(resp.Allocations, listed(a))
	}
	return resp, nil
}

// ipamError tells the local API which IPAM errors are the caller's
// (invalid) and which mean "try again later" (no pod CIDRs yet).
func ipamError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ipam.ErrNoRanges):
		return fmt.Errorf("%w: this node has no pod CIDRs yet: %v", api.ErrNotReady, err)
	case errors.Is(err, ipam.ErrInvalidKey):
		return fmt.Errorf("%w: %v", api.ErrInvalid, err)
	}
	return err
}

// releaseStale frees the addresses of pods that left the API without a CNI
// DEL, once the grace period has passed.
func (d *Daemon) releaseStale() error {
	list, err := d.ipam.List()
	if err != nil {
		return err
	}
	for _, k := range d.stale.Stale(list, d.watcher.Pods(), time.Now()) {
		if _, err := d.ipam.Release(k); err != nil {
			return err
		}
		d.log.Info("released the addresses of a pod that is gone", "container", short(k.ContainerID), "if", k.IfName)
	}
	return nil
}

// ipamLoop runs releaseStale on pod changes and often enough to honour the
// grace period, and carries out the releases plugins recorded while the
// daemon was down (the first round runs at once, at start).
func (d *Daemon) ipamLoop(ctx context.Context) {
	tick := time.NewTicker(max(d.cfg.IPAMReleaseGrace.Duration/4, time.Second))
	defer tick.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-d.podKick:
			case <-tick.C:
			}
		}
		if err := d.releaseStale(); err != nil {
			d.log.Warn("releasing stale pod addresses failed", "err", err)
		}
		if err := d.releasePending(); err != nil {
			d.log.Warn("carrying out pending releases failed", "err", err)
		}
	}
}

func (d *Daemon) podMTU() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mtu
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Conversions between the local API's types (netconf) and the store's
// (ipam), here so that the store stays free of the API and the CNI
// library. ipam.Key has the same fields as netconf.AttachmentKey, so the
// two convert directly.

// ownerOf returns the owner an allocate request records.
func ownerOf(req netconf.AllocateRequest) ipam.Owner {
	return ipam.Owner{
		Network:      req.Network,
		Netns:        req.Netns,
		PodNamespace: req.PodNamespace,
		PodName:      req.PodName,
		PodUID:       req.PodUID,
	}
}

// allocatedIPs returns a's addresses with their range's gateway, for an
// AllocateResponse.
func allocatedIPs(a ipam.Allocation) []netconf.AllocatedIP {
	ips := make([]netconf.AllocatedIP, 0, len(a.IPs))
	for _, p := range a.IPs {
		ips = append(ips, netconf.AllocatedIP{Address: p.String(), Gateway: ipam.Gateway(p).String()})
	}
	return ips
}

// listed returns a as the local API lists it.
func listed(a ipam.Allocation) netconf.Allocation {
	ips := make([]string, 0, len(a.IPs))
	for _, p := range a.IPs {
		ips = append(ips, p.String())
	}
	return netconf.Allocation{
		AttachmentKey: netconf.AttachmentKey(a.Key),
		IPs:           ips,
		Network:       a.Network,
		Netns:         a.Netns,
		PodNamespace:  a.PodNamespace,
		PodName:       a.PodName,
		PodUID:        a.PodUID,
		Created:       a.Created.UTC().Format(time.RFC3339),
	}
}
