package config

import (
	"fmt"
	"strconv"
)

// ListenPortAnnotation on a Node sets that node's listen port, over the
// config and flags every node of a DaemonSet shares. Nodes behind one NAT
// router need ports of their own: a router that keeps source ports can keep
// a port toward one destination for one host only, so all but one of the
// nodes on a port get other ports toward some destinations, and their hole
// punching depends on which node reached a peer first (docs/install.md,
// "Several nodes behind one NAT"). Read at start: a change takes effect
// when the daemon restarts.
const ListenPortAnnotation = "wirelace.io/listen-port"

// NodeListenPort returns the port a Node's annotations set, and whether
// they set one. A value that is not a port is an error, not ignored: the
// node would otherwise run on a port its operator did not choose.
func NodeListenPort(annotations map[string]string) (int, bool, error) {
	v, ok := annotations[ListenPortAnnotation]
	if !ok {
		return 0, false, nil
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < 1 || port > 65535 {
		return 0, false, fmt.Errorf("annotation %s=%q: want a UDP port, 1 to 65535", ListenPortAnnotation, v)
	}
	return port, true, nil
}
