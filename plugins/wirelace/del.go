package main

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/ipam"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
	"github.com/wirelace/wirelace/plugins/internal/podipam"
	"github.com/wirelace/wirelace/plugins/internal/podnet"
)

// cmdDel detaches a pod: the veth first, then the addresses. In that order
// an address is never free while a host route still points it at the old
// pod. What is already gone (netns, veth, allocation) is success; a daemon
// that does not answer gets the release as a pending-release file and DEL
// succeeds (see netconf.ReleaseOrRecord). DEL needs nothing that only ADD
// uses, so it succeeds whatever the config lacks for ADD.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := netconf.LoadPluginConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.Chained() {
		return chainedDel(args, conf)
	}
	// The veth is found by name in the host netns: CNI_NETNS is not needed,
	// and may be gone already.
	if err := podnet.Teardown(args.ContainerID, args.IfName); err != nil {
		return cnierr.Wrap(err, "detach container %s", args.ContainerID)
	}
	if conf.IPAM.Type == netconf.IPAMType {
		// wirelace-ipam's DEL, without the exec.
		ctx, cancel := daemonContext()
		defer cancel()
		_, err := netconf.NewClient(conf.IPAM.Socket).ReleaseOrRecord(ctx, netconf.PendingRelease{IPAM: true, AttachmentKey: podipam.Key(args)})
		return cnierr.Daemon(err, fmt.Sprintf("release the addresses of container %s %s", args.ContainerID, args.IfName))
	}
	if err := ipam.ExecDel(conf.IPAM.Type, args.StdinData); err != nil {
		return cnierr.Wrap(err, "IPAM plugin %s", conf.IPAM.Type)
	}
	return nil
}
