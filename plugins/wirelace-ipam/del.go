package main

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
	"github.com/wirelace/wirelace/plugins/internal/podipam"
)

// cmdDel releases the attachment's addresses. Releasing what the daemon
// does not know is success (DEL must succeed for what is already gone). A
// daemon that does not answer gets the release as a pending-release file,
// which it carries out when it is back, and DEL succeeds: the addresses do
// not leak whether or not the runtime ever retries.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := netconf.LoadIPAMConf(args.StdinData)
	if err != nil {
		return err
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	_, err = c.ReleaseOrRecord(ctx, netconf.PendingRelease{IPAM: true, AttachmentKey: podipam.Key(args)})
	return cnierr.Daemon(err, fmt.Sprintf("release the addresses of container %s %s", args.ContainerID, args.IfName))
}
