package main

import (
	"context"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ipam"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
	"github.com/wirelace/wirelace/plugins/internal/podipam"
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
	// Checked before anything is made.
	if _, err := netconf.ParsePodArgs(args.Args); err != nil {
		return err
	}
	podNS, err := podnet.OpenNetNS(args.Netns)
	if err != nil {
		return err
	}
	defer podNS.Close()

	ctx, cancel := daemonContext()
	defer cancel()
	alloc := allocate
	if conf.IPAM.Type != netconf.IPAMType {
		alloc = allocateByPlugin
	}
	ipamRes, mtu, err := alloc(ctx, conf, args)
	if err != nil {
		return err
	}
	// From here on the addresses are allocated: give them back on failure,
	// unless the attachment existed before this ADD (a repeated ADD), which
	// the runtime's DEL will take down whole.
	existed := false
	defer func() {
		if err != nil && !existed {
			err = releaseAfterFailure(ctx, err, conf, args)
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

// allocate gets the addresses from wirelaced directly, as wirelace-ipam
// would: one round trip, which also brings the MTU and fails with code 11
// while the daemon is down or not ready.
func allocate(ctx context.Context, conf *netconf.PluginConf, args *skel.CmdArgs) (types.Result, int, error) {
	resp, err := podipam.Allocate(ctx, netconf.NewClient(conf.IPAM.Socket), conf.Name, args)
	if err != nil {
		return nil, 0, err
	}
	res, err := podipam.Result(resp, nil)
	if err != nil {
		// The addresses are held: give them back.
		return nil, 0, releaseAfterFailure(ctx, err, conf, args)
	}
	mtu := conf.MTU
	if mtu == 0 {
		mtu = resp.MTU
	}
	if err := checkMTU(mtu); err != nil {
		return nil, 0, releaseAfterFailure(ctx, err, conf, args)
	}
	return res, mtu, nil
}

// allocateByPlugin runs another IPAM plugin, as the spec has it, and asks
// wirelaced for the MTU and readiness (a call that costs the same however
// large the mesh).
func allocateByPlugin(ctx context.Context, conf *netconf.PluginConf, args *skel.CmdArgs) (types.Result, int, error) {
	mtu := conf.MTU
	if mtu == 0 {
		st, err := netconf.NewClient(conf.Socket).Readiness(ctx)
		if err != nil {
			return nil, 0, cnierr.Daemon(err, "ask wirelaced for the pod MTU")
		}
		if !st.Ready {
			return nil, 0, cnierr.New(types.ErrTryAgainLater, "wirelaced is not ready yet: %s", st.Reason)
		}
		if err := checkMTU(st.MTU); err != nil {
			return nil, 0, err
		}
		mtu = st.MTU
	}
	res, err := ipam.ExecAdd(conf.IPAM.Type, args.StdinData)
	if err != nil {
		return nil, 0, cnierr.Wrap(err, "IPAM plugin %s", conf.IPAM.Type)
	}
	return res, mtu, nil
}

func checkMTU(mtu int) error {
	if mtu < netconf.MinMTU || mtu > netconf.MaxMTU {
		return cnierr.New(types.ErrInternal, "wirelaced reports MTU %d, which no interface can have: set \"mtu\" in the network config, or fix the daemon's", mtu)
	}
	return nil
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
func releaseAfterFailure(ctx context.Context, addErr error, conf *netconf.PluginConf, args *skel.CmdArgs) error {
	var err error
	if conf.IPAM.Type == netconf.IPAMType {
		_, err = netconf.NewClient(conf.IPAM.Socket).ReleaseOrRecord(ctx, netconf.PendingRelease{IPAM: true, AttachmentKey: podipam.Key(args)})
	} else {
		err = ipam.ExecDel(conf.IPAM.Type, args.StdinData)
	}
	if err != nil {
		return cnierr.Annotate(addErr, fmt.Sprintf("(releasing the addresses also failed: %v)", err))
	}
	return addErr
}
