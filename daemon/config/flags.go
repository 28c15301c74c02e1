package config

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Parse builds the configuration from defaults, then the config file named
// by --config, then the flags the user actually set, so that a flag always
// wins over the file and the file over the defaults.
//
// It parses the command line twice: once to find --config, and once, after
// the file is loaded, onto the loaded configuration. The flag package only
// writes the flags that were given, so the second pass overrides exactly
// those.
func Parse(args []string) (Config, error) {
	var configFile string
	probe := Defaults()
	pre := flagSet(&probe, &configFile)
	pre.SetOutput(io.Discard)
	if err := pre.Parse(args); err != nil {
		// Report it, with usage, from the real flag set below.
		configFile = ""
	}

	c := Defaults()
	if configFile != "" {
		if err := c.LoadFile(configFile); err != nil {
			return c, err
		}
	}
	fs := flagSet(&c, &configFile)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: wirelaced takes only flags", fs.Arg(0))
	}
	if c.NodeName == "" {
		c.NodeName = os.Getenv("NODE_NAME")
	}
	if c.NodeName == "" {
		if h, err := os.Hostname(); err == nil {
			c.NodeName = h
		}
	}
	return c, c.Validate()
}

// flagSet binds every flag to a field of c, with c's values as defaults.
func flagSet(c *Config, configFile *string) *flag.FlagSet {
	fs := flag.NewFlagSet("wirelaced", flag.ContinueOnError)
	fs.StringVar(configFile, "config", *configFile, "YAML config file (flags override it)")
	fs.StringVar(&c.NodeName, "node-name", c.NodeName, "Kubernetes Node name of this node (default $NODE_NAME, else the host name)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig file; empty means in-cluster credentials")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "namespace of the per-node heartbeat Leases")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory for keys and the IPAM database (must persist)")
	fs.StringVar(&c.Socket, "socket", c.Socket, "unix socket of the local API")
	fs.StringVar(&c.Interface, "interface", c.Interface, "WireGuard interface name")
	fs.IntVar(&c.ListenPort, "listen-port", c.ListenPort, "UDP port for WireGuard, STUN and probes")
	fs.IntVar(&c.MTU, "mtu", c.MTU, "MTU of the WireGuard interface (0: underlay MTU - 80)")
	fs.Var((*list)(&c.MeshCIDRs), "mesh-cidrs", "comma-separated pools for mesh IPs, at most one per family")
	fs.Var((*list)(&c.ClusterCIDRs), "cluster-cidrs", "comma-separated pools for node pod CIDRs when Node.spec.podCIDRs is unset")
	fs.IntVar(&c.PodCIDRSizeIPv4, "pod-cidr-size-ipv4", c.PodCIDRSizeIPv4, "prefix length of IPv4 pod CIDR blocks claimed from --cluster-cidrs")
	fs.IntVar(&c.PodCIDRSizeIPv6, "pod-cidr-size-ipv6", c.PodCIDRSizeIPv6, "prefix length of IPv6 pod CIDR blocks claimed from --cluster-cidrs")
	fs.DurationVar(&c.IPAMReleaseGrace.Duration, "ipam-release-grace", c.IPAMReleaseGrace.Duration, "how long a pod's address outlives its pod in the API without a CNI DEL")
	fs.BoolVar(&c.Masquerade, "masquerade", c.Masquerade, "masquerade pod traffic leaving the cluster")
	fs.Var((*list)(&c.AdvertiseCIDRs), "advertise-cidrs", "comma-separated prefixes this node routes for the mesh as a gateway; peers need a RouteGrant for it")
	fs.BoolVar(&c.AdvertiseGrantedCIDRs, "advertise-granted-cidrs", c.AdvertiseGrantedCIDRs, "also advertise the prefixes RouteGrants grant this node (a gateway made by one RouteGrant)")
	fs.BoolVar(&c.NodeIPRoutes, "node-ip-routes", c.NodeIPRoutes, "route other nodes' InternalIPs through the mesh (for a primary CNI's overlay, kubelet exec/logs across NATs)")
	fs.IntVar(&c.RouteTable, "route-table", c.RouteTable, "routing table for node-IP routes")
	fs.IntVar(&c.FwMark, "fwmark", c.FwMark, "firewall mark on WireGuard's and the relays' own packets, which skip the node-IP table")
	fs.StringVar(&c.InstallStatusFile, "install-status-file", c.InstallStatusFile, "status file written by wirelace-install, shown in the daemon's status (empty: not read)")
	fs.Var((*list)(&c.Relays), "relays", "comma-separated relay servers (host:port)")
	fs.StringVar(&c.RelayCA, "relay-ca", c.RelayCA, "PEM CA file to verify relays' TLS certificates (empty: plain TCP)")
	fs.Var((*list)(&c.STUNServers), "stun-servers", "comma-separated STUN servers (IP:port), two on different IPs to classify the NAT")
	fs.Var((*list)(&c.Endpoints), "endpoints", "comma-separated extra IP:port endpoint candidates (e.g. a port-forward)")
	fs.DurationVar(&c.HeartbeatInterval.Duration, "heartbeat-interval", c.HeartbeatInterval.Duration, "how often the node Lease is renewed")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "address of the Prometheus /metrics endpoint (empty: off)")
	fs.BoolVar(&c.Profiling, "profiling", c.Profiling, "also serve Go's /debug/pprof on the metrics listener")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wirelaced [flags]\n\nwirelaced is the Wirelace node daemon. Flags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// list is a comma-separated list flag bound to a []string; an empty value
// gives an empty list.
type list []string

func (l *list) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *list) Set(s string) error {
	*l = nil
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}
