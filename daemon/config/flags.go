package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Parse builds the configuration from defaults, then the config file named
// by --config, then the flags the user actually set, so that a flag always
// wins over the file and the file over the defaults.
func Parse(args []string) (Config, error) {
	c := Defaults()
	fs := flag.NewFlagSet("wirelaced", flag.ContinueOnError)
	configFile := fs.String("config", "", "YAML config file (flags override it)")
	fs.StringVar(&c.NodeName, "node-name", "", "Kubernetes Node name of this node (default $NODE_NAME, else the host name)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster credentials")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "namespace of the per-node heartbeat Leases")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory for keys and the IPAM database (must persist)")
	fs.StringVar(&c.Socket, "socket", c.Socket, "unix socket of the local API")
	fs.StringVar(&c.Interface, "interface", c.Interface, "WireGuard interface name")
	fs.IntVar(&c.ListenPort, "listen-port", c.ListenPort, "UDP port for WireGuard, STUN and probes")
	fs.IntVar(&c.MTU, "mtu", c.MTU, "MTU of the WireGuard interface (0: underlay MTU - 80)")
	meshCIDRs := fs.String("mesh-cidrs", strings.Join(c.MeshCIDRs, ","), "comma-separated pools for mesh IPs, at most one per family")
	clusterCIDRs := fs.String("cluster-cidrs", strings.Join(c.ClusterCIDRs, ","), "comma-separated pools for node pod CIDRs when Node.spec.podCIDRs is unset")
	fs.IntVar(&c.PodCIDRSizeIPv4, "pod-cidr-size-ipv4", c.PodCIDRSizeIPv4, "prefix length of IPv4 pod CIDR blocks claimed from --cluster-cidrs")
	fs.IntVar(&c.PodCIDRSizeIPv6, "pod-cidr-size-ipv6", c.PodCIDRSizeIPv6, "prefix length of IPv6 pod CIDR blocks claimed from --cluster-cidrs")
	fs.DurationVar(&c.IPAMReleaseGrace.Duration, "ipam-release-grace", c.IPAMReleaseGrace.Duration, "how long a pod's address outlives its pod in the API without a CNI DEL")
	fs.BoolVar(&c.Masquerade, "masquerade", c.Masquerade, "masquerade pod traffic leaving the cluster")
	relays := fs.String("relays", "", "comma-separated relay servers (host:port)")
	fs.StringVar(&c.RelayCA, "relay-ca", "", "PEM CA file to verify relays' TLS certificates (empty: plain TCP)")
	stunServers := fs.String("stun-servers", "", "comma-separated STUN servers (IP:port), two on different IPs to classify the NAT")
	endpoints := fs.String("endpoints", "", "comma-separated extra IP:port endpoint candidates (e.g. a port-forward)")
	fs.DurationVar(&c.HeartbeatInterval.Duration, "heartbeat-interval", c.HeartbeatInterval.Duration, "how often the node Lease is renewed")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "address of the Prometheus /metrics endpoint (empty: off)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wirelaced [flags]\n\nwirelaced is the Wirelace node daemon. Flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: wirelaced takes only flags", fs.Arg(0))
	}

	if *configFile != "" {
		// Re-apply the file under the flags: load it into a fresh default
		// config, then copy over only what was set on the command line.
		fromFile := Defaults()
		if err := fromFile.LoadFile(*configFile); err != nil {
			return c, err
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		override(&fromFile, c, set, lists{*meshCIDRs, *clusterCIDRs, *endpoints, *relays, *stunServers})
		c = fromFile
	} else {
		c.MeshCIDRs = splitList(*meshCIDRs)
		c.ClusterCIDRs = splitList(*clusterCIDRs)
		c.Endpoints = splitList(*endpoints)
		c.Relays = splitList(*relays)
		c.STUNServers = splitList(*stunServers)
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

// lists are the comma-separated list flags, as given.
type lists struct{ meshCIDRs, clusterCIDRs, endpoints, relays, stunServers string }

// override copies the flags named in set from flags into dst.
func override(dst *Config, flags Config, set map[string]bool, l lists) {
	for name := range set {
		switch name {
		case "node-name":
			dst.NodeName = flags.NodeName
		case "kubeconfig":
			dst.Kubeconfig = flags.Kubeconfig
		case "namespace":
			dst.Namespace = flags.Namespace
		case "state-dir":
			dst.StateDir = flags.StateDir
		case "socket":
			dst.Socket = flags.Socket
		case "interface":
			dst.Interface = flags.Interface
		case "listen-port":
			dst.ListenPort = flags.ListenPort
		case "mtu":
			dst.MTU = flags.MTU
		case "mesh-cidrs":
			dst.MeshCIDRs = splitList(l.meshCIDRs)
		case "cluster-cidrs":
			dst.ClusterCIDRs = splitList(l.clusterCIDRs)
		case "pod-cidr-size-ipv4":
			dst.PodCIDRSizeIPv4 = flags.PodCIDRSizeIPv4
		case "pod-cidr-size-ipv6":
			dst.PodCIDRSizeIPv6 = flags.PodCIDRSizeIPv6
		case "ipam-release-grace":
			dst.IPAMReleaseGrace = flags.IPAMReleaseGrace
		case "masquerade":
			dst.Masquerade = flags.Masquerade
		case "endpoints":
			dst.Endpoints = splitList(l.endpoints)
		case "relays":
			dst.Relays = splitList(l.relays)
		case "relay-ca":
			dst.RelayCA = flags.RelayCA
		case "stun-servers":
			dst.STUNServers = splitList(l.stunServers)
		case "heartbeat-interval":
			dst.HeartbeatInterval = flags.HeartbeatInterval
		case "metrics-listen":
			dst.MetricsListen = flags.MetricsListen
		case "log-level":
			dst.LogLevel = flags.LogLevel
		}
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
