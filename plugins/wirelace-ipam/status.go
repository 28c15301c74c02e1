package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
)

// cmdStatus: code 50 while wirelaced does not answer or is not ready.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := netconf.LoadIPAMConf(args.StdinData)
	if err != nil {
		return err
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	st, err := c.Readiness(ctx)
	return cnierr.Status(st, err, conf.IPAM.Socket)
}
