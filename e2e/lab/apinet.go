package lab

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
)

// The API server's own network, as on EKS Hybrid Nodes: the control plane
// sits in a VPC whose addresses are not the endpoint nodes dial (the lab's
// 198.18.0.1), and it reaches the kubelets (logs, exec, port-forward) and
// webhooks in pods from there. Nodes behind NAT have no address it can
// route to, so the VPC's route table sends the remote node and pod
// networks to a gateway: a Wirelace node in the VPC, which carries them
// through the mesh; the NATed nodes route the VPC's prefix back through
// lace0 because the gateway advertises it under a RouteGrant.
var (
	// ControlPlaneNetwork is the lab's "VPC" prefix.
	ControlPlaneNetwork = netip.MustParsePrefix("198.18.1.0/24")
	// controlPlaneVPCAddr is the API server's address in it, the source of
	// its connections to kubelets and pods across the gateway.
	controlPlaneVPCAddr = netip.MustParseAddr("198.18.1.1")
)

// RouteControlPlaneVia makes gw the API server's gateway to prefixes (the
// NATed sites' LANs, their nodes' pod CIDRs): the API server's namespace
// gets an address in ControlPlaneNetwork and a route to each prefix via
// gw, from that address. gw must be a node on the internet (a public
// node). The mesh side is the operator's RouteGrant for gw.
func (l *Lab) RouteControlPlaneVia(ctx context.Context, gw *Node, prefixes ...netip.Prefix) error {
	if gw.Site != nil {
		return fmt.Errorf("gateway %s is behind a NAT; the API server's network can only route to a node on its own network", gw.Name)
	}
	l.mu.Lock()
	first := !l.vpcAddr
	l.vpcAddr = true
	l.mu.Unlock()
	if first {
		if _, err := run(ctx, "ip", "-n", l.internet, "addr", "add", netip.PrefixFrom(controlPlaneVPCAddr, 32).String(), "dev", "lo"); err != nil {
			return err
		}
	}
	for _, p := range prefixes {
		if _, err := run(ctx, "ip", "-n", l.internet, "route", "replace", p.String(), "via", gw.IP.String(), "src", controlPlaneVPCAddr.String()); err != nil {
			return err
		}
	}
	return nil
}

// FetchFromControlPlane fetches every URL from the API server's namespace,
// as a webhook call or a metrics scrape from the control plane would
// (through RouteControlPlaneVia's routes, from its ControlPlaneNetwork
// address), and returns the fetcher's output.
func (l *Lab) FetchFromControlPlane(ctx context.Context, urls ...string) (string, error) {
	if len(urls) == 0 {
		return "", fmt.Errorf("FetchFromControlPlane: no URLs")
	}
	if _, err := l.images(ctx); err != nil { // builds the httpd binary
		return "", err
	}
	argv := []string{"ip", "netns", "exec", l.internet, filepath.Join(l.Dir, "images", "httpd"), "-timeout", "30s"}
	for _, u := range urls {
		argv = append(argv, "-get", u)
	}
	return run(ctx, argv...)
}
