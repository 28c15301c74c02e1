package main

import (
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
	"github.com/wirelace/wirelace/plugins/internal/podipam"
)

// cmdCheck verifies that wirelaced still holds the attachment's allocation
// and, given a prevResult, that it holds the addresses the pod has.
// Addresses are compared without prefix length: the wirelace plugin gives
// the pod /32 and /128 where the allocation has the pod CIDR's.
func cmdCheck(args *skel.CmdArgs) error {
	conf, err := netconf.LoadIPAMConf(args.StdinData)
	if err != nil {
		return err
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	list, err := c.Allocations(ctx)
	if err != nil {
		return cnierr.Daemon(err, "list wirelaced's allocations")
	}
	key := podipam.Key(args)
	var alloc *netconf.Allocation
	for i := range list.Allocations {
		if list.Allocations[i].AttachmentKey == key {
			alloc = &list.Allocations[i]
			break
		}
	}
	if alloc == nil {
		return cnierr.New(types.ErrInternal, "wirelaced holds no allocation for container %s %s: its addresses were released (by a DEL or a GC) while the pod still uses them; recreate the pod", args.ContainerID, args.IfName)
	}
	if conf.PrevResult == nil {
		return nil
	}
	prev, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return cnierr.New(types.ErrDecodingFailure, "prevResult: %v", err)
	}
	held := map[string]bool{}
	for _, a := range alloc.IPs {
		if ip, _, err := net.ParseCIDR(a); err == nil {
			held[ip.String()] = true
		} else if ip := net.ParseIP(a); ip != nil {
			held[ip.String()] = true
		}
	}
	for _, ip := range prev.IPs {
		if !held[ip.Address.IP.String()] {
			return cnierr.New(types.ErrInternal, "the pod has %s but wirelaced's allocation for container %s %s is %v", ip.Address.IP, args.ContainerID, args.IfName, alloc.IPs)
		}
	}
	return nil
}
