package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/cnierr"
)

// cmdDel releases the attachment's addresses. Releasing what the daemon
// does not know is success (DEL must succeed for what is already gone); a
// daemon that does not answer is code 11, so the runtime retries and the
// addresses do not leak.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := netconf.LoadIPAMConf(args.StdinData)
	if err != nil {
		return err
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	err = c.Release(ctx, keyOf(args))
	var apiErr *netconf.APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		return nil // the contract says release succeeds; a 404 means the same
	}
	return cnierr.Daemon(err, fmt.Sprintf("release the addresses of container %s %s", args.ContainerID, args.IfName))
}
