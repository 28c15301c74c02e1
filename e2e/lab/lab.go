package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/wirelace/wirelace/e2e/k8s"
	"github.com/wirelace/wirelace/e2e/labbuild"
)

// The lab's "internet": one bridge in its own namespace. Addresses come from
// 198.18.0.0/15, the range set aside for benchmarking networks, so they can
// never be confused with a real network.
var (
	internetPrefix = netip.MustParsePrefix("198.18.0.0/24")
	internetGW     = netip.MustParseAddr("198.18.0.1")
)

// Options configure a lab.
type Options struct {
	// Root is the repository root: binaries are read from Root/bin and CRDs
	// from Root/install.
	Root string
	// CacheDir holds the built kube-apiserver and etcd (default Root/.cache).
	CacheDir string
	// Log receives progress lines (default io.Discard).
	Log io.Writer
	// Helm makes a real cluster that gets Wirelace from its Helm chart
	// (HelmInstall): kube-controller-manager and kube-scheduler run, real
	// Kubernetes nodes can join (WithDaemonSet), and kubelet, containerd,
	// kubectl and the controllers are built into CacheDir first (make
	// lab-bins does that ahead of tests; runc must be installed). The lab
	// creates only the CRDs, which its relays watch from the start and
	// which helm then leaves as they are, and its relays' own identity
	// (namespace wirelace-lab), so that nothing the lab made collides with
	// what the chart owns.
	Helm bool
}

// Lab is one running lab. Close it, always.
type Lab struct {
	Prefix string
	// Dir holds logs and node state: Root/.lab/<prefix>.
	Dir string
	CP  *k8s.ControlPlane
	// Core and Dynamic are admin clients (their connections are made inside
	// the lab's internet namespace).
	Core    kubernetes.Interface
	Dynamic dynamic.Interface

	opts     Options
	internet string // netns name
	log      io.Writer

	mu     sync.Mutex
	nodes  []*Node
	nextIP int
	sites  int
	// primaries counts nodes with a primary CNI, for their ranges.
	primaries int
	relays    []*Relay
	closers   []func() error
	// vpcAddr: the API server's ControlPlaneNetwork address is set up.
	vpcAddr bool

	// With Options.Helm: the node binaries, and the image archives
	// (built on first use).
	nodeBins   labbuild.NodeBinaries
	imagesMu   sync.Mutex
	imageFiles []labImage
}

// nextInternetIP hands out the next address on the internet bridge. Callers
// hold l.mu.
func (l *Lab) nextInternetIP() netip.Addr {
	ip := internetPrefix.Addr()
	for i := 0; i < l.nextIP; i++ {
		ip = ip.Next()
	}
	l.nextIP++
	return ip
}

// New builds a lab: sweeps dead runs' leftovers, creates the internet
// namespace and bridge, starts the control plane there and installs the
// CRDs and RBAC. On error everything made so far is removed.
func New(ctx context.Context, opts Options) (_ *Lab, err error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.CacheDir == "" {
		opts.CacheDir = filepath.Join(opts.Root, ".cache")
	}
	if swept := append(Sweep(ctx), sweepCgroups()...); len(swept) > 0 {
		fmt.Fprintf(opts.Log, "lab: removed leftovers of dead runs: %v\n", swept)
	}
	l := &Lab{opts: opts, log: opts.Log, nextIP: 11}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	var b [2]byte
	for i := 0; ; i++ {
		rand.Read(b[:])
		l.Prefix = "wl" + hex.EncodeToString(b[:])
		if err = claimPrefix(l.Prefix); err == nil {
			break
		}
		if i > 10 {
			return nil, err
		}
	}
	l.defer_(func() error { releasePrefix(l.Prefix); return nil })
	l.Dir = filepath.Join(opts.Root, ".lab", l.Prefix)
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, err
	}

	bins, err := labbuild.EnsureBinaries(ctx, opts.CacheDir, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver and etcd: %w", err)
	}
	var controllers *k8s.Controllers
	if opts.Helm {
		if err := RequireRunc(); err != nil {
			return nil, err
		}
		if l.nodeBins, err = labbuild.EnsureNodeBinaries(ctx, opts.CacheDir, opts.Log); err != nil {
			return nil, fmt.Errorf("kubelet, containerd and controllers: %w", err)
		}
		controllers = &k8s.Controllers{Binaries: l.nodeBins}
	}
	if err := l.makeInternet(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(l.log, "lab %s: starting kube-apiserver and etcd in %s\n", l.Prefix, l.internet)
	l.CP, err = k8s.Start(ctx, k8s.Options{
		Binaries:    bins,
		Dir:         filepath.Join(l.Dir, "controlplane"),
		NetNS:       l.internet,
		AdvertiseIP: internetGW,
		Controllers: controllers,
	})
	if err != nil {
		return nil, err
	}
	l.defer_(l.CP.Stop)
	cfg := l.CP.RESTConfig()
	if l.Core, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if l.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if err := l.install(ctx); err != nil {
		return nil, fmt.Errorf("install CRDs and RBAC: %w", err)
	}
	return l, nil
}

// makeInternet creates the internet namespace with its bridge.
func (l *Lab) makeInternet(ctx context.Context) error {
	l.internet = l.Prefix + "-inet"
	if _, err := run(ctx, "ip", "netns", "add", l.internet); err != nil {
		return err
	}
	l.defer_(func() error { _, err := run(context.Background(), "ip", "netns", "del", l.internet); return err })
	ns := []string{"ip", "-n", l.internet}
	return runAll(ctx,
		append(ns, "link", "set", "lo", "up"),
		append(ns, "link", "add", "br0", "address", bridgeMAC(), "type", "bridge"),
		append(ns, "addr", "add", netip.PrefixFrom(internetGW, internetPrefix.Bits()).String(), "dev", "br0"),
		append(ns, "link", "set", "br0", "up"),
	)
}

// defer_ registers cleanup to run, last first, at Close.
func (l *Lab) defer_(f func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closers = append(l.closers, f)
}

// Close stops every daemon and process and removes every namespace the lab
// made, then checks that none is left. Dir (logs) stays: see RemoveDir.
func (l *Lab) Close() error {
	l.mu.Lock()
	nodes := l.nodes
	closers := l.closers
	l.nodes, l.closers = nil, nil
	l.mu.Unlock()

	var errs []error
	for _, n := range nodes {
		if err := n.close(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	if left := netnsWithPrefix(context.Background(), l.Prefix); len(left) > 0 {
		errs = append(errs, fmt.Errorf("lab %s left namespaces behind: %v", l.Prefix, left))
	}
	return errors.Join(errs...)
}

// RemoveDir deletes the lab's log and state directory; call it after Close
// when the run passed (keep it to debug a failure).
func (l *Lab) RemoveDir() error { return os.RemoveAll(l.Dir) }

// CNIPath is where libcni looks for plugins: the project's own (Root/bin)
// and the reference plugins the Makefile builds into the cache (bridge,
// ptp, host-local), which stand in for a primary CNI.
func (l *Lab) CNIPath() []string {
	return []string{filepath.Join(l.opts.Root, "bin"), filepath.Join(l.opts.CacheDir, "cni-plugins")}
}

// Nodes returns the lab's nodes in the order they were added.
func (l *Lab) Nodes() []*Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Node(nil), l.nodes...)
}

// plugInternet connects namespace ns to the internet bridge through a veth
// named ifname on its side, with the next internet address and a default
// route. The veth is created with each end directly in its namespace, so no
// lab link ever exists in the host namespace.
func (l *Lab) plugInternet(ctx context.Context, ns, ifname string) (netip.Addr, error) {
	l.mu.Lock()
	ip := l.nextInternetIP()
	l.mu.Unlock()
	return ip, runAll(ctx,
		[]string{"ip", "link", "add", ns, "netns", l.internet, "type", "veth", "peer", "name", ifname, "netns", ns},
		[]string{"ip", "-n", l.internet, "link", "set", ns, "master", "br0", "up"},
		[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
		[]string{"ip", "-n", ns, "addr", "add", netip.PrefixFrom(ip, internetPrefix.Bits()).String(), "dev", ifname},
		[]string{"ip", "-n", ns, "link", "set", ifname, "up"},
		[]string{"ip", "-n", ns, "route", "add", "default", "via", internetGW.String()},
	)
}

// bridgeMAC returns a random locally administered MAC for a lab bridge. A
// bridge without an address of its own takes the lowest of its ports' and
// changes it as ports come and go, which leaves hosts that already asked
// for the gateway with a stale ARP entry (a first node then could not
// reach the API server for seconds).
func bridgeMAC() string {
	var b [6]byte
	rand.Read(b[:])
	b[0] = (b[0] | 0x02) &^ 0x01
	return net.HardwareAddr(b[:]).String()
}

// CutAPI makes the API server unreachable from every node (on), or
// reachable again (off): packets from the internet bridge to the API
// server's port are dropped, so clients hang rather than being refused, as
// when a control plane or the path to it fails. The lab's own admin
// clients, which connect inside the internet namespace, are not affected.
func (l *Lab) CutAPI(ctx context.Context, on bool) error {
	u, err := url.Parse(l.CP.URL())
	if err != nil {
		return err
	}
	table := "inet " + l.Prefix + "api"
	if !on {
		return nftIn(ctx, l.internet, "delete table "+table+"\n")
	}
	return nftIn(ctx, l.internet, fmt.Sprintf("table %s {\n chain in {\n  type filter hook input priority 0;\n  iifname \"br0\" tcp dport %s drop\n }\n}\n", table, u.Port()))
}
