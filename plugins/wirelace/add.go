package main

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ipam"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
	"github.com/wirelace/wirelace/plugins/internal/podnet"
)

// cmdAdd attaches a pod. Standalone: addresses from the IPAM plugin, then
// the veth pair. Chained: see chainedAdd.
// A repeated ADD returns the same attachment. A failed ADD leaves nothing it
// made: it removes a veth it created and releases the addresses.
func cmdAdd(args *skel.CmdArgs) (err error) {
	conf, err := netconf.LoadPluginConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.Chained() {
		return chainedAdd(args, conf)
	}
	if conf.PrevResult != nil {
		return cnierr.New(types.ErrInvalidNetworkConfig,
			"prevResult: wirelace has an \"ipam\" section (standalone mode, it makes the pod's interface) but runs after another plugin: make it the first plugin of the conflist, or remove \"ipam\" to chain it after the primary CNI")
	}
	// Checked here too, though wirelace-ipam reads it, to fail before
	// anything is made.
	if _, err := netconf.ParsePodArgs(args.Args); err != nil {
		return err
	}
	podNS, err := podnet.OpenNetNS(args.Netns)
	if err != nil {
		return err
	}
	defer podNS.Close()

	mtu := conf.MTU
	if mtu == 0 {
		if mtu, err = daemonMTU(conf.Socket); err != nil {
			return err
		}
	}

	ipamRes, err := ipam.ExecAdd(conf.IPAM.Type, args.StdinData)
	if err != nil {
		return cnierr.Wrap(err, "IPAM plugin %s", conf.IPAM.Type)
	}
	// From here on the addresses are allocated: give them back on failure,
	// unless the attachment existed before this ADD (a repeated ADD), which
	// the runtime's DEL will take down whole.
	existed := false
	defer func() {
		if err != nil && !existed {
			err = releaseAfterFailure(err, conf, args)
		}
	}()

	ips, err := podIPs(ipamRes, conf.IPAM.Type)
	if err != nil {
		return err
	}
	if err := podnet.ValidateMTU(mtu, ips); err != nil {
		return cnierr.New(types.ErrInvalidNetworkConfig, "%v", err)
	}
	res, existed, err := podnet.Setup(podnet.Attachment{
		ContainerID: args.ContainerID,
		IfName:      args.IfName,
		NetNS:       podNS,
		IPs:         ips,
		MTU:         mtu,
	})
	if err != nil {
		return cnierr.Wrap(err, "attach container %s", args.ContainerID)
	}
	res.DNS = conf.DNS
	return types.PrintResult(res, conf.CNIVersion)
}

// daemonMTU asks wirelaced for the MTU pods must use. A daemon that does
// not answer or is not ready yet makes ADD fail with code 11, so that the
// runtime tries again.
func daemonMTU(socket string) (int, error) {
	ctx, cancel := daemonContext()
	defer cancel()
	st, err := netconf.NewClient(socket).Status(ctx)
	if err != nil {
		return 0, cnierr.Daemon(err, "ask wirelaced for the pod MTU")
	}
	if !st.Ready {
		return 0, cnierr.New(types.ErrTryAgainLater, "wirelaced is not ready yet: %s", st.Reason)
	}
	if st.MTU < netconf.MinMTU || st.MTU > netconf.MaxMTU {
		return 0, cnierr.New(types.ErrInternal, "wirelaced reports MTU %d, which no interface can have: set \"mtu\" in the network config, or fix the daemon's", st.MTU)
	}
	return st.MTU, nil
}

// podIPs takes the pod's addresses from the IPAM result. Their prefix length
// (the pod CIDR's) does not matter: the pod gets each as a /32 or /128.
func podIPs(r types.Result, ipamType string) ([]net.IP, error) {
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, cnierr.Wrap(err, "read the result of IPAM plugin %s", ipamType)
	}
	if len(res.IPs) == 0 {
		return nil, cnierr.New(types.ErrInternal, "IPAM plugin %s returned no addresses", ipamType)
	}
	ips := make([]net.IP, 0, len(res.IPs))
	for _, ip := range res.IPs {
		ips = append(ips, ip.Address.IP)
	}
	return ips, nil
}

// releaseAfterFailure gives the addresses of a failed ADD back and says so
// in the error if that fails too; the runtime's DEL after the failed ADD
// will try again.
func releaseAfterFailure(addErr error, conf *netconf.PluginConf, args *skel.CmdArgs) error {
	if err := ipam.ExecDel(conf.IPAM.Type, args.StdinData); err != nil {
		return cnierr.Annotate(addErr, fmt.Sprintf("(releasing the addresses also failed: %v)", err))
	}
	return addErr
}
