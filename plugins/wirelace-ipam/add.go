package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/podipam"
)

// cmdAdd gets the attachment's addresses from wirelaced, which returns the
// same ones again for a repeated ADD.
func cmdAdd(args *skel.CmdArgs) error {
	conf, err := netconf.LoadIPAMConf(args.StdinData)
	if err != nil {
		return err
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	resp, err := podipam.Allocate(ctx, c, conf.Name, args)
	if err != nil {
		return err
	}
	res, err := podipam.Result(resp, conf.IPAM.Routes)
	if err != nil {
		return err
	}
	return types.PrintResult(res, conf.CNIVersion)
}
