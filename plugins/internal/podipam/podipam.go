// Package podipam is wirelace-ipam's work as a library: asking wirelaced
// for an attachment's addresses and turning its answer into a CNI IPAM
// result. The wirelace plugin calls it directly when its IPAM type is
// wirelace-ipam (one round trip to the daemon per ADD, which also brings
// the MTU and says whether the daemon is ready); the wirelace-ipam binary
// wraps it for the plugins that delegate to it (bridge, ptp).
package podipam

import (
	"context"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
)

// Key is the attachment key of a CNI call.
func Key(args *skel.CmdArgs) netconf.AttachmentKey {
	return netconf.AttachmentKey{ContainerID: args.ContainerID, IfName: args.IfName}
}

// Allocate gets (or, for a repeated ADD, gets again) the attachment's
// addresses in network. The pod identity from CNI_ARGS goes with the
// request so that the daemon can reconcile its allocations against the
// pods of the node. Errors are CNI errors (code 11 while the daemon is down
// or not ready).
func Allocate(ctx context.Context, c *netconf.Client, network string, args *skel.CmdArgs) (netconf.AllocateResponse, error) {
	pod, err := netconf.ParsePodArgs(args.Args)
	if err != nil {
		return netconf.AllocateResponse{}, err
	}
	resp, err := c.Allocate(ctx, netconf.AllocateRequest{
		Network:       network,
		AttachmentKey: Key(args),
		Netns:         args.Netns,
		PodNamespace:  pod.Namespace,
		PodName:       pod.Name,
		PodUID:        pod.UID,
	})
	if err != nil {
		return resp, cnierr.Daemon(err, fmt.Sprintf("allocate addresses for container %s %s", args.ContainerID, args.IfName))
	}
	return resp, nil
}

// Result turns the daemon's allocation into an IPAM result: each address
// with the pod CIDR's prefix length and the CIDR's gateway, for plugins
// that route through one (ptp, bridge).
func Result(resp netconf.AllocateResponse, routes []*types.Route) (*types100.Result, error) {
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
