package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
)

// cmdGC has wirelaced release every allocation not among the runtime's
// valid attachments (cni.dev/valid-attachments).
func cmdGC(args *skel.CmdArgs) error {
	conf, err := netconf.LoadIPAMConf(args.StdinData)
	if err != nil {
		return err
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	_, err = c.GC(ctx, conf.Name, netconf.ValidAttachmentKeys(&conf.PluginConf))
	return cnierr.Daemon(err, "GC of wirelaced's allocations")
}
