package main

import (
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
	"github.com/wirelace/wirelace/plugins/internal/podnet"
)

// cmdGC releases what belongs to no valid attachment. The IPAM plugin gets
// the GC first (the spec has it forwarded) and releases the allocations.
//
// Then host veths: the kernel deletes a veth with its pod netns, so a stale
// one means a netns that outlived its attachment, and its host routes hold
// addresses that may be given to new pods. A host veth is removed only if
// its name is that of no valid attachment AND of no allocation wirelaced
// still holds. The second condition keeps GC from touching veths of
// another network's attachments (the runtime's valid list covers one
// network only), of an ADD in flight (it allocates before making the veth),
// or anything at all when the daemon cannot be asked or the IPAM plugin is
// not wirelace-ipam (then the allocations are unknown).
func cmdGC(args *skel.CmdArgs) error {
	conf, err := netconf.LoadPluginConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.Chained() {
		return chainedGC(conf)
	}
	ctx, cancel := daemonContext()
	defer cancel()
	if err := invoke.DelegateGC(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
		return cnierr.Wrap(err, "IPAM plugin %s GC", conf.IPAM.Type)
	}
	if conf.IPAM.Type != netconf.IPAMType {
		return nil
	}
	list, err := netconf.NewClient(conf.Socket).Allocations(ctx)
	if err != nil {
		return cnierr.Daemon(err, "list wirelaced's allocations to find stale host veths")
	}
	keep := map[string]bool{}
	for _, a := range conf.ValidAttachments {
		keep[podnet.HostVethName(a.ContainerID, a.IfName)] = true
	}
	for _, a := range list.Allocations {
		keep[podnet.HostVethName(a.ContainerID, a.IfName)] = true
	}
	if _, err := podnet.RemoveHostVeths(func(name string) bool { return keep[name] }); err != nil {
		return cnierr.Wrap(err, "GC of host veths")
	}
	return nil
}
