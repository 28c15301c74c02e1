package main

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
)

// cmdAdd gets the attachment's addresses from wirelaced, which returns the
// same ones again for a repeated ADD. The pod identity from CNI_ARGS goes
// with the request so that the daemon can reconcile its allocations against
// the pods of the node.
func cmdAdd(args *skel.CmdArgs) error {
	conf, err := netconf.LoadIPAMConf(args.StdinData)
	if err != nil {
		return err
	}
	pod, err := netconf.ParsePodArgs(args.Args)
	if err != nil {
		return err
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	resp, err := c.Allocate(ctx, netconf.AllocateRequest{
		Network:       conf.Name,
		AttachmentKey: keyOf(args),
		Netns:         args.Netns,
		PodNamespace:  pod.Namespace,
		PodName:       pod.Name,
		PodUID:        pod.UID,
	})
	if err != nil {
		return cnierr.Daemon(err, fmt.Sprintf("allocate addresses for container %s %s", args.ContainerID, args.IfName))
	}
	res, err := result(resp, conf.IPAM.Routes)
	if err != nil {
		return err
	}
	return types.PrintResult(res, conf.CNIVersion)
}

// result turns the daemon's allocation into an IPAM result: each address
// with the pod CIDR's prefix length and the CIDR's gateway, for plugins
// that route through one (ptp, bridge).
func result(resp netconf.AllocateResponse, routes []*types.Route) (*types100.Result, error) {
	if len(resp.IPs) == 0 {
		return nil, cnierr.New(types.ErrInternal, "wirelaced allocated no addresses: does the node have a pod CIDR (Node.spec.podCIDRs or wirelaced's config)?")
	}
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion, Routes: routes}
	for _, a := range resp.IPs {
		ip, cidr, err := net.ParseCIDR(a.Address)
		if err != nil {
			return nil, cnierr.New(types.ErrInternal, "wirelaced answered an invalid address %q: %v", a.Address, err)
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		ipc := &types100.IPConfig{Address: net.IPNet{IP: ip, Mask: cidr.Mask}}
		if a.Gateway != "" {
			if ipc.Gateway = net.ParseIP(a.Gateway); ipc.Gateway == nil {
				return nil, cnierr.New(types.ErrInternal, "wirelaced answered an invalid gateway %q for %s", a.Gateway, a.Address)
			}
		}
		res.IPs = append(res.IPs, ipc)
	}
	return res, nil
}
