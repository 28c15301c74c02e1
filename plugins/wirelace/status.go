package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/pkg/ipam"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
)

// cmdStatus says whether ADD can work: wirelaced answers and is ready, and
// in standalone mode the IPAM plugin says so too (the spec has STATUS go to
// the delegate). A chained ADD needs only the daemon.
// Not ready is code 50 with the daemon's reason.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := netconf.LoadPluginConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := daemonContext()
	defer cancel()
	st, err := netconf.NewClient(conf.Socket).Readiness(ctx)
	if err := cnierr.Status(st, err, conf.Socket); err != nil {
		return err
	}
	if conf.Chained() {
		return nil // the primary CNI answers for its own STATUS
	}
	if err := ipam.ExecStatus(conf.IPAM.Type, args.StdinData); err != nil {
		return cnierr.Wrap(err, "IPAM plugin %s", conf.IPAM.Type)
	}
	return nil
}
