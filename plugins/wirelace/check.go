package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ipam"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
	"github.com/wirelace/wirelace/plugins/internal/podnet"
)

// cmdCheck verifies an attachment against the result of its ADD, which the
// runtime passes as prevResult: the allocation (by the IPAM plugin), then
// the veth, addresses, MTU and routes on both sides.
func cmdCheck(args *skel.CmdArgs) error {
	conf, err := netconf.LoadPluginConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return cnierr.New(types.ErrInvalidNetworkConfig, "CHECK needs prevResult (the result of ADD, which the runtime caches) and got none")
	}
	prev, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return cnierr.New(types.ErrDecodingFailure, "prevResult: %v", err)
	}
	if conf.Chained() {
		return chainedCheck(args, conf, prev)
	}
	if err := ipam.ExecCheck(conf.IPAM.Type, args.StdinData); err != nil {
		return cnierr.Wrap(err, "IPAM plugin %s", conf.IPAM.Type)
	}
	podNS, err := podnet.OpenNetNS(args.Netns)
	if err != nil {
		return err
	}
	defer podNS.Close()

	att := podnet.Attachment{ContainerID: args.ContainerID, IfName: args.IfName, NetNS: podNS}
	if err := podnet.Check(att, prev); err != nil {
		return cnierr.Wrap(err, "CHECK of container %s %s failed", args.ContainerID, args.IfName)
	}
	return nil
}
