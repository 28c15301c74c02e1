// Command wirelace-ipam is Wirelace's CNI IPAM plugin. It holds no state:
// every allocation lives in wirelaced, which it asks over its local API
// socket. It works under the wirelace plugin and under other plugins that
// delegate IPAM (bridge, ptp).
package main

import (
	"context"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/wirelace/wirelace/netconf"
)

// daemonTimeout bounds each call to wirelaced.
const daemonTimeout = 15 * time.Second

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		Status: cmdStatus,
		GC:     cmdGC,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"),
		"wirelace-ipam: pod addresses from wirelaced (CNI IPAM plugin)")
}

// client returns a client of the daemon the configuration names, with a
// context bounding the call.
func client(conf *netconf.IPAMNetConf) (*netconf.Client, context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), daemonTimeout)
	return netconf.NewClient(conf.IPAM.Socket), ctx, cancel
}
