// Command wirelace is Wirelace's CNI plugin (spec 1.1). In standalone mode
// it gives each pod a veth pair whose host end routes the pod's addresses,
// with the addresses from an IPAM plugin (normally wirelace-ipam) and the
// MTU of the WireGuard mesh from wirelaced.
package main

import (
	"context"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// daemonTimeout bounds the plugin's own calls to wirelaced; a runtime kills
// a plugin that hangs much longer than this anyway.
const daemonTimeout = 15 * time.Second

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		Status: cmdStatus,
		GC:     cmdGC,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"),
		"wirelace: WireGuard mesh pod networking (CNI plugin; needs wirelaced on the node)")
}

func daemonContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), daemonTimeout)
}
