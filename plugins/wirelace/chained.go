package main

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
	"github.com/wirelace/wirelace/plugins/internal/podipam"
	"github.com/wirelace/wirelace/plugins/internal/podnet"
)

// Chained mode: a primary CNI (Cilium, bridge, ptp) made the pod's
// interface and addresses and passes its result as prevResult. wirelace
// keeps all of that as it is, registers the pod's addresses with wirelaced
// (which routes them through the mesh) and fits the pod's gateway routes to
// the tunnel's MTU. Its result is prevResult, unchanged.

// chainedAdd is ADD in chained mode.
func chainedAdd(args *skel.CmdArgs, conf *netconf.PluginConf) (err error) {
	if conf.PrevResult == nil {
		return netconf.ErrStandaloneNeedsIPAM()
	}
	prev, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return cnierr.New(types.ErrDecodingFailure, "prevResult: %v", err)
	}
	ips, err := podAddrs(prev, args.IfName)
	if err != nil {
		return err
	}
	pod, err := netconf.ParsePodArgs(args.Args)
	if err != nil {
		return err
	}
	podNS, err := podnet.OpenNetNS(args.Netns)
	if err != nil {
		return err
	}
	defer podNS.Close()

	ctx, cancel := daemonContext()
	defer cancel()
	c := netconf.NewClient(conf.Socket)
	req := netconf.RegisterRequest{
		Network:       conf.Name,
		AttachmentKey: podipam.Key(args),
		Netns:         args.Netns,
		PodNamespace:  pod.Namespace,
		PodName:       pod.Name,
		PodUID:        pod.UID,
	}
	for _, a := range ips {
		req.IPs = append(req.IPs, a.String())
	}
	resp, err := c.Register(ctx, req)
	if err != nil {
		return cnierr.Daemon(err, fmt.Sprintf("register the addresses of container %s %s with wirelaced", args.ContainerID, args.IfName))
	}
	// Registered: undo it if the rest fails, so a failed ADD leaves no
	// route to this pod anywhere in the mesh.
	defer func() {
		if err != nil {
			if _, rerr := c.ReleaseOrRecord(ctx, pendingChained(conf, args)); rerr != nil {
				err = cnierr.Annotate(err, fmt.Sprintf("(undoing the registration also failed: %v)", rerr))
			}
		}
	}()
	mtu := conf.MTU
	if mtu == 0 {
		mtu = resp.MTU
	}
	if mtu < netconf.MinMTU || mtu > netconf.MaxMTU {
		return cnierr.New(types.ErrInternal, "wirelaced reports MTU %d, which no route can have: set \"mtu\" in the network config, or fix the daemon's", mtu)
	}
	if err := podnet.SetRouteMTU(podNS, args.IfName, mtu); err != nil {
		return cnierr.Wrap(err, "fit the routes of container %s to the mesh MTU", args.ContainerID)
	}
	return types.PrintResult(conf.PrevResult, conf.CNIVersion)
}

// chainedDel is DEL in chained mode: the registration goes (through the
// daemon, or as a pending release when it is down). The primary's
// interface and routes are the primary's to remove.
func chainedDel(args *skel.CmdArgs, conf *netconf.PluginConf) error {
	ctx, cancel := daemonContext()
	defer cancel()
	_, err := netconf.NewClient(conf.Socket).ReleaseOrRecord(ctx, pendingChained(conf, args))
	return cnierr.Daemon(err, fmt.Sprintf("release the registration of container %s %s", args.ContainerID, args.IfName))
}

// chainedCheck is CHECK in chained mode: the daemon still has the
// registration with the addresses of prevResult, and the pod's gateway
// routes fit the tunnel.
func chainedCheck(args *skel.CmdArgs, conf *netconf.PluginConf, prev *types100.Result) error {
	ips, err := podAddrs(prev, args.IfName)
	if err != nil {
		return err
	}
	ctx, cancel := daemonContext()
	defer cancel()
	c := netconf.NewClient(conf.Socket)
	list, err := c.Registrations(ctx)
	if err != nil {
		return cnierr.Daemon(err, "list wirelaced's chained registrations")
	}
	i := slices.IndexFunc(list.Registrations, func(r netconf.Registration) bool {
		return r.Network == conf.Name && r.AttachmentKey == podipam.Key(args)
	})
	if i < 0 {
		return cnierr.New(types.ErrInternal, "container %s %s is not registered with wirelaced: its addresses are not routed through the mesh", args.ContainerID, args.IfName)
	}
	want := make([]string, 0, len(ips))
	for _, a := range ips {
		want = append(want, a.String())
	}
	if got := list.Registrations[i].IPs; !slices.Equal(got, want) {
		return cnierr.New(types.ErrInternal, "wirelaced routes %v for container %s %s, but prevResult says %v", got, args.ContainerID, args.IfName, want)
	}
	mtu := conf.MTU
	if mtu == 0 {
		st, err := c.Readiness(ctx)
		if err != nil {
			return cnierr.Daemon(err, "ask wirelaced for the mesh MTU")
		}
		mtu = st.MTU
	}
	podNS, err := podnet.OpenNetNS(args.Netns)
	if err != nil {
		return err
	}
	defer podNS.Close()
	if err := podnet.CheckRouteMTU(podNS, args.IfName, mtu); err != nil {
		return cnierr.Wrap(err, "CHECK of container %s %s failed", args.ContainerID, args.IfName)
	}
	return nil
}

// chainedGC is GC in chained mode: registrations of this network that no
// valid attachment names are released.
func chainedGC(conf *netconf.PluginConf) error {
	ctx, cancel := daemonContext()
	defer cancel()
	_, err := netconf.NewClient(conf.Socket).GCChained(ctx, conf.Name, netconf.ValidAttachmentKeys(&conf.PluginConf))
	return cnierr.Daemon(err, "release stale chained registrations")
}

// podAddrs are the pod's addresses in a primary's result: those on the
// pod-side interface named ifName (or on no interface in particular). A
// result without any means wirelace is chained after something that does
// not give pods addresses, which is a configuration error.
func podAddrs(prev *types100.Result, ifName string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, ip := range prev.IPs {
		if ip.Interface != nil {
			i := *ip.Interface
			if i < 0 || i >= len(prev.Interfaces) || prev.Interfaces[i].Sandbox == "" || prev.Interfaces[i].Name != ifName {
				continue
			}
		}
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			continue
		}
		out = append(out, a.Unmap())
	}
	if len(out) == 0 {
		return nil, cnierr.New(types.ErrInvalidNetworkConfig,
			"prevResult has no address on the pod's interface %s: in chained mode wirelace must come after the plugin that gives pods their addresses", ifName)
	}
	return out, nil
}

func pendingChained(conf *netconf.PluginConf, args *skel.CmdArgs) netconf.PendingRelease {
	return netconf.PendingRelease{Chained: true, Network: conf.Name, AttachmentKey: podipam.Key(args)}
}
