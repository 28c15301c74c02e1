// Package config holds wirelaced's configuration: defaults, the YAML file,
// command-line flags on top, and validation that names what to fix.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is everything wirelaced needs to know at start. Field names are the
// keys of the YAML config file.
type Config struct {
	// NodeName is this node's Kubernetes Node name (default: $NODE_NAME,
	// else the host name).
	NodeName string `json:"nodeName"`
	// Kubeconfig is a kubeconfig file; empty means in-cluster credentials.
	Kubeconfig string `json:"kubeconfig"`
	// Namespace holds the per-node heartbeat Leases.
	Namespace string `json:"namespace"`
	// StateDir keeps keys and the IPAM database; it must survive restarts.
	StateDir string `json:"stateDir"`
	// Socket is the local API's unix socket, used by the CNI plugins and
	// wirelacectl.
	Socket string `json:"socket"`
	// Interface is the WireGuard interface name.
	Interface string `json:"interface"`
	// ListenPort is the one UDP port for WireGuard, STUN and probes.
	ListenPort int `json:"listenPort"`
	// MTU of the WireGuard interface; 0 means the underlay MTU minus 80 (the
	// WireGuard overhead over IPv6, the worst case).
	MTU int `json:"mtu"`
	// MeshCIDRs are the pools mesh IPs are claimed from, at most one per
	// address family.
	MeshCIDRs []string `json:"meshCIDRs"`
	// ClusterCIDRs are the pools node pod CIDRs are claimed from when the
	// cluster does not set Node.spec.podCIDRs, at most one per family.
	ClusterCIDRs []string `json:"clusterCIDRs"`
	// PodCIDRSizeIPv4 and PodCIDRSizeIPv6 are the prefix lengths of the
	// blocks claimed from ClusterCIDRs.
	PodCIDRSizeIPv4 int `json:"podCIDRSizeIPv4"`
	PodCIDRSizeIPv6 int `json:"podCIDRSizeIPv6"`
	// IPAMReleaseGrace is how long a pod address is kept after its pod has
	// gone from the API without a CNI DEL, before it is freed.
	IPAMReleaseGrace Duration `json:"ipamReleaseGrace"`
	// Masquerade pod traffic that leaves the cluster (not towards the mesh
	// or other pods) behind the node's address.
	Masquerade bool `json:"masquerade"`
	// AdvertiseCIDRs are prefixes beyond its pods that this node routes
	// for the mesh, as a gateway (its site's LAN, the API server's
	// network). Peers route them only inside a RouteGrant an operator
	// wrote for this node.
	AdvertiseCIDRs []string `json:"advertiseCIDRs"`
	// AdvertiseGrantedCIDRs also advertises whatever the RouteGrants naming
	// this node grant it. A DaemonSet gives every node the same flags, so
	// there the operator makes a node a gateway with one object, the
	// RouteGrant, which is also what lets peers accept the claim.
	AdvertiseGrantedCIDRs bool `json:"advertiseGrantedCIDRs"`
	// NodeIPRoutes routes other nodes' InternalIPs through the mesh (when
	// they are not on this node's own networks), so that traffic between
	// node addresses crosses NATs: a primary CNI's overlay (Cilium VXLAN
	// between node IPs), kubelet exec/logs. The routes live in table
	// RouteTable behind a policy rule that WireGuard's own packets (marked
	// FwMark) skip, so the tunnel never carries itself.
	NodeIPRoutes bool `json:"nodeIPRoutes"`
	// RouteTable is the routing table of the node-IP routes.
	RouteTable int `json:"routeTable"`
	// FwMark marks WireGuard's and the relays' own packets so that policy
	// routing keeps them off the mesh.
	FwMark int `json:"fwMark"`
	// InstallStatusFile is where wirelace-install reports how the CNI
	// configuration stands (installed, or a conflict with the primary CNI);
	// the daemon shows it in its status. Empty: not read.
	InstallStatusFile string `json:"installStatusFile"`
	// Relays are the relay servers (host:port), each of which the node
	// stays connected to; traffic goes through them when no direct path
	// works.
	Relays []string `json:"relays"`
	// RelayCA is a PEM file of CAs to verify relays' TLS certificates with;
	// empty means plain TCP (the relay sees only WireGuard ciphertext, TLS
	// hides who talks to whom).
	RelayCA string `json:"relayCA"`
	// STUNServers (ip:port) tell the node its public address and NAT type;
	// at least two on different IPs are needed to classify the mapping.
	STUNServers []string `json:"stunServers"`
	// Endpoints are extra host:port candidates published for this node, such
	// as a port-forward on the site's router.
	Endpoints []string `json:"endpoints"`
	// MetricsListen is the address of the Prometheus /metrics endpoint.
	// The default is the node's loopback: the metrics name peers and count
	// their traffic, and the endpoint has no authentication, so exposing
	// it (e.g. on the node IP for a Prometheus scraping the DaemonSet) is
	// an explicit choice. Empty disables it.
	MetricsListen string `json:"metricsListen"`
	// Profiling also serves Go's /debug/pprof on the metrics listener, to
	// find where CPU and memory go on a live node. Off by default.
	Profiling bool `json:"profiling"`
	// HeartbeatInterval is how often the node renews its Lease.
	HeartbeatInterval Duration `json:"heartbeatInterval"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel"`
}

// Duration is a time.Duration that reads "10s" from YAML.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return fmt.Errorf("duration must be a string like \"10s\", got %s", s)
	}
	v, err := time.ParseDuration(s[1 : len(s)-1])
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		Namespace:         "wirelace-system",
		StateDir:          "/var/lib/wirelace",
		Socket:            "/run/wirelace/wirelaced.sock",
		Interface:         "lace0",
		ListenPort:        51820,
		MeshCIDRs:         []string{"10.77.0.0/16", "fd77:1ace::/64"},
		ClusterCIDRs:      []string{"10.244.0.0/16", "fd44:1ace::/48"},
		PodCIDRSizeIPv4:   24,
		PodCIDRSizeIPv6:   64,
		IPAMReleaseGrace:  Duration{time.Minute},
		Masquerade:        true,
		RouteTable:        119,
		FwMark:            0x1ace,
		InstallStatusFile: "/run/wirelace/install-status.json",
		HeartbeatInterval: Duration{10 * time.Second},
		LogLevel:          "info",
		MetricsListen:     "127.0.0.1:9471",
	}
}

// LoadFile reads a YAML config file over c. Unknown keys are errors: a typo
// in a config file should never be silently ignored.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// Validate checks c and fills in what is derived (node name). Its errors
// name the setting and what a valid value looks like.
func (c *Config) Validate() error {
	if c.NodeName == "" {
		return fmt.Errorf("node name is empty: set --node-name or $NODE_NAME")
	}
	if c.StateDir == "" {
		return fmt.Errorf("state dir is empty: set --state-dir")
	}
	if c.Socket == "" {
		return fmt.Errorf("socket path is empty: set --socket")
	}
	if c.Interface == "" || len(c.Interface) > 15 {
		return fmt.Errorf("interface name %q: must be 1 to 15 characters", c.Interface)
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return fmt.Errorf("listen port %d: must be between 0 and 65535", c.ListenPort)
	}
	// 0 is unspecified, 253-255 are default, main and local: sharing one
	// would let the node-IP routes shadow (or be shadowed by) the host's.
	if c.RouteTable <= 0 || c.RouteTable >= 253 && c.RouteTable <= 255 || c.RouteTable > 1<<31-1 {
		return fmt.Errorf("route table %d: use a table of Wirelace's own (1..252 or above 255), not main, local or default", c.RouteTable)
	}
	if c.FwMark <= 0 || c.FwMark > 1<<32-1 {
		return fmt.Errorf("fwmark %#x: must be a non-zero 32-bit mark", c.FwMark)
	}
	if c.MTU != 0 && (c.MTU < 1280 || c.MTU > 65535) {
		return fmt.Errorf("mtu %d: must be 0 (detect) or between 1280 and 65535", c.MTU)
	}
	if _, err := c.MeshPools(); err != nil {
		return err
	}
	if _, err := c.ClusterPools(); err != nil {
		return err
	}
	if c.IPAMReleaseGrace.Duration < 0 {
		return fmt.Errorf("ipam release grace %s: must not be negative", c.IPAMReleaseGrace)
	}
	if _, err := c.AdvertisePrefixes(); err != nil {
		return err
	}
	if _, err := c.ConfiguredEndpoints(); err != nil {
		return err
	}
	if _, err := c.STUNAddrs(); err != nil {
		return err
	}
	for _, r := range c.Relays {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return fmt.Errorf("relay %q is not host:port", r)
		}
	}
	if c.HeartbeatInterval.Duration < time.Second {
		return fmt.Errorf("heartbeat interval %s: must be at least 1s", c.HeartbeatInterval)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log level %q: must be debug, info, warn or error", c.LogLevel)
	}
	return nil
}

// MeshPools parses MeshCIDRs: at least one, at most one per family, each
// with room for more than a handful of nodes.
func (c *Config) MeshPools() ([]netip.Prefix, error) {
	if len(c.MeshCIDRs) == 0 {
		return nil, fmt.Errorf("mesh CIDRs are empty: set --mesh-cidrs, e.g. 10.77.0.0/16")
	}
	return parsePools("mesh CIDR", c.MeshCIDRs, func(p netip.Prefix) error {
		if hostBits := p.Addr().BitLen() - p.Bits(); hostBits < 4 {
			return fmt.Errorf("mesh CIDR %q is too small for a mesh: use /28 or larger", p)
		}
		return nil
	})
}

// ClusterPools parses ClusterCIDRs: at most one per family, each larger
// than the blocks cut from it.
func (c *Config) ClusterPools() ([]netip.Prefix, error) {
	return parsePools("cluster CIDR", c.ClusterCIDRs, func(p netip.Prefix) error {
		size := c.PodCIDRSizeIPv4
		if p.Addr().Is6() {
			size = c.PodCIDRSizeIPv6
		}
		if size < p.Bits() || size > p.Addr().BitLen()-2 {
			return fmt.Errorf("pod CIDR size /%d does not fit cluster CIDR %s: use a length between /%d and /%d", size, p, p.Bits(), p.Addr().BitLen()-2)
		}
		return nil
	})
}

// AdvertisePrefixes parses AdvertiseCIDRs. A default route is refused:
// no peer would route it, and a gateway for everything is not a mesh.
func (c *Config) AdvertisePrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.AdvertiseCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("advertised CIDR %q is not a valid CIDR (want e.g. 192.168.10.0/24)", s)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("advertised CIDR %q has host bits set; did you mean %s?", s, p.Masked())
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("advertised CIDR %q is a default route, which peers never route", s)
		}
		out = append(out, p)
	}
	return out, nil
}

// BlockSize is the prefix length of pod CIDR blocks claimed from pool.
func (c *Config) BlockSize(pool netip.Prefix) int {
	if pool.Addr().Is4() {
		return c.PodCIDRSizeIPv4
	}
	return c.PodCIDRSizeIPv6
}

// parsePools parses a list of CIDRs, at most one per family, with check for
// what is specific to the list.
func parsePools(what string, list []string, check func(netip.Prefix) error) ([]netip.Prefix, error) {
	var pools []netip.Prefix
	seen := map[bool]bool{}
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s %q is not a valid CIDR (want e.g. 10.77.0.0/16)", what, s)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("%s %q has host bits set; did you mean %s?", what, s, p.Masked())
		}
		if err := check(p); err != nil {
			return nil, err
		}
		if seen[p.Addr().Is4()] {
			return nil, fmt.Errorf("%ss %v: at most one per address family", what, list)
		}
		seen[p.Addr().Is4()] = true
		pools = append(pools, p)
	}
	return pools, nil
}

// STUNAddrs parses STUNServers.
func (c *Config) STUNAddrs() ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range c.STUNServers {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return nil, fmt.Errorf("STUN server %q is not IP:port", s)
		}
		out = append(out, ap)
	}
	return out, nil
}

// ConfiguredEndpoints parses Endpoints as host:port addresses.
func (c *Config) ConfiguredEndpoints() ([]netip.AddrPort, error) {
	var eps []netip.AddrPort
	for _, s := range c.Endpoints {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q is not IP:port (IPv6 as [addr]:port)", s)
		}
		eps = append(eps, ap)
	}
	return eps, nil
}
