package lab

import (
	"github.com/wirelace/wirelace/e2e/proc"

	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/wirelace/wirelace/e2e/k8s"
	"github.com/wirelace/wirelace/netconf"
)

// Node is one lab node: a network namespace on the internet bridge, a Node
// object, and (once started) a wirelaced.
type Node struct {
	Name  string
	NetNS string
	// IP is the node's address: public on the internet bridge, or private on
	// its Site's LAN.
	IP   netip.Addr
	Site *Site
	// Primary is the primary CNI wirelace is chained after, if any; its
	// pods get addresses from PrimaryRanges.
	Primary       PrimaryCNI
	PrimaryRanges []netip.Prefix
	// Dir holds the node's state dir, kubeconfig, socket and daemon log.
	Dir        string
	StateDir   string
	Socket     string
	Kubeconfig string
	LogPath    string
	// Kubelet is set on a real Kubernetes node (WithDaemonSet): its kubelet,
	// containerd and CNI dirs.
	Kubelet *KubeletNode

	lab       *Lab
	daemonSet bool

	mu   sync.Mutex
	proc *proc.Process
}

// NodeOption changes how a lab node is made.
type NodeOption func(*nodeOptions)

type nodeOptions struct {
	obj       *corev1.Node
	site      *Site
	primary   PrimaryCNI
	daemonSet bool
}

// WithDaemonSet makes a kubelet node whose Wirelace comes from the chart's
// DaemonSet (Lab.HelmInstall), as on a user's cluster: the lab never
// starts wirelaced there, and Socket is the daemon's socket as the host
// sees it inside the node's mount namespace. With WithPrimary, the
// primary's conflist is written once the Node has its pod CIDRs, and the
// chart is installed in chained mode.
func WithDaemonSet() NodeOption {
	return func(o *nodeOptions) { o.daemonSet = true }
}

// WithPodCIDRs sets Node.spec.podCIDRs, as a cluster that allocates node
// CIDRs (kube-controller-manager, EKS) would.
func WithPodCIDRs(cidrs ...string) NodeOption {
	return func(o *nodeOptions) {
		o.obj.Spec.PodCIDRs = cidrs
		o.obj.Spec.PodCIDR = cidrs[0]
	}
}

// WithAnnotations sets annotations on the node's Node object.
func WithAnnotations(a map[string]string) NodeOption {
	return func(o *nodeOptions) { o.obj.Annotations = maps.Clone(a) }
}

// InSite puts the node on a site's LAN, behind its NAT router, instead of
// directly on the internet (a node with a public address).
func InSite(s *Site) NodeOption {
	return func(o *nodeOptions) { o.site = s }
}

// WithPrimary chains wirelace after a stand-in primary CNI on the node.
func WithPrimary(p PrimaryCNI) NodeOption {
	return func(o *nodeOptions) { o.primary = p }
}

// AddNode creates a node namespace wired to the internet bridge, registers
// its Node object (as a kubelet would; a kubelet node's own kubelet does)
// and writes a kubeconfig holding a ServiceAccount token bound to that Node.
func (l *Lab) AddNode(ctx context.Context, name string, opts ...NodeOption) (*Node, error) {
	o := nodeOptions{obj: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}}
	for _, opt := range opts {
		opt(&o)
	}
	if o.daemonSet {
		if err := l.checkKubeletOptions(o); err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
	}
	n := &Node{
		Name:    name,
		NetNS:   l.Prefix + "-" + name,
		Dir:     filepath.Join(l.Dir, "nodes", name),
		lab:     l,
		Site:    o.site,
		Primary: o.primary,
	}
	if o.primary != "" && !o.daemonSet {
		n.PrimaryRanges = l.nextPrimaryRanges()
	}
	n.daemonSet = o.daemonSet
	n.StateDir = filepath.Join(n.Dir, "state")
	n.Socket = filepath.Join(n.Dir, "wirelaced.sock")
	n.Kubeconfig = filepath.Join(n.Dir, "kubeconfig")
	n.LogPath = filepath.Join(n.Dir, "wirelaced.log")
	if len(n.NetNS) > 15 {
		return nil, fmt.Errorf("node name %q too long for interface names", name)
	}
	if err := os.MkdirAll(n.StateDir, 0o700); err != nil {
		return nil, err
	}
	if o.daemonSet {
		// Its CNI config comes later, from the chart's installer.
		n.Kubelet = newKubeletNode(n)
	} else if err := n.writeConfList(ctx); err != nil {
		return nil, err
	}
	if _, err := run(ctx, "ip", "netns", "add", n.NetNS); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.nodes = append(l.nodes, n)
	l.mu.Unlock()

	var err error
	if o.site != nil {
		n.IP, err = o.site.attach(ctx, n.NetNS)
	} else {
		n.IP, err = l.plugInternet(ctx, n.NetNS, "eth0")
	}
	if err != nil {
		return nil, err
	}
	var node *corev1.Node
	if n.Kubelet != nil {
		// The kubelet registers the Node with its InternalIP (--node-ip).
		if node, err = l.startKubelet(ctx, n); err != nil {
			return nil, err
		}
	} else if node, err = l.registerNode(ctx, n, o.obj); err != nil {
		return nil, err
	}
	if n.daemonSet {
		// The daemon's credentials are its pod's; its socket is in the
		// node's own /run.
		n.Socket = n.InNode("/run/wirelace/wirelaced.sock")
		if n.Primary != "" {
			return n, n.writeKubeletPrimary(node)
		}
		return n, nil
	}
	if err := l.writeNodeKubeconfig(ctx, n, node); err != nil {
		return nil, err
	}
	return n, nil
}

// registerNode creates the Node object of a node without a kubelet, with
// what a kubelet would report.
func (l *Lab) registerNode(ctx context.Context, n *Node, obj *corev1.Node) (*corev1.Node, error) {
	node, err := l.Core.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("register Node %s: %w", n.Name, err)
	}
	// The node's address, as a kubelet reports it.
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP.String()}}
	if node, err = l.Core.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("set the InternalIP of Node %s: %w", n.Name, err)
	}
	return node, nil
}

// writeNodeKubeconfig gets a token for the wirelace ServiceAccount bound to
// the Node, as the DaemonSet's projected token would be: it carries the
// node's name, and dies with the Node.
func (l *Lab) writeNodeKubeconfig(ctx context.Context, n *Node, node *corev1.Node) error {
	tr, err := l.Core.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, serviceAccount, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To(int64(24 * 3600)),
			BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: node.Name, UID: node.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for node %s: %w", n.Name, err)
	}
	return l.CP.WriteKubeconfig(n.Kubeconfig, tr.Status.Token)
}

// Args are the wirelaced flags the lab uses for this node.
func (n *Node) Args() []string {
	args := append([]string{
		"--node-name", n.Name,
		"--kubeconfig", n.Kubeconfig,
		"--state-dir", n.StateDir,
		"--socket", n.Socket,
		"--namespace", Namespace,
		// The node's own: wirelace-install writes it there (installChained).
		"--install-status-file", filepath.Join(n.Dir, "install-status.json"),
		"--log-level", "debug",
	}, n.lab.relayArgs()...)
	return args
}

// Argv returns the command line that runs bin with args inside the node:
// a private mount namespace with its own tmpfs on /run/wireguard (so every
// node has its own lace0.sock), then the node's network namespace. Each
// step execs the next, so the process started is the daemon itself.
func (n *Node) Argv(bin string, args ...string) []string {
	script := `mount -t tmpfs -o mode=0700 wirelace-lab /run/wireguard && exec ip netns exec "$0" "$@"`
	return append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script, n.NetNS, bin}, args...)
}

// Start runs wirelaced in the node with the lab's flags plus extra.
func (n *Node) Start(extra ...string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.daemonSet {
		return fmt.Errorf("node %s: wirelaced runs as the DaemonSet's pod here, not as a lab process", n.Name)
	}
	if n.proc != nil && !n.proc.Exited() {
		return fmt.Errorf("node %s: daemon already running", n.Name)
	}
	if err := os.MkdirAll("/run/wireguard", 0o700); err != nil {
		return err
	}
	argv := n.Argv(filepath.Join(n.lab.opts.Root, "bin", "wirelaced"), append(n.Args(), extra...)...)
	p, err := proc.Start("wirelaced "+n.Name, n.LogPath, argv)
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

func (n *Node) process() *proc.Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// PID is the daemon's pid, or 0 if it is not running.
func (n *Node) PID() int {
	if p := n.process(); p != nil && !p.Exited() {
		return p.Pid
	}
	return 0
}

// Running reports whether the daemon process is alive.
func (n *Node) Running() bool { return n.PID() != 0 }

// Kill sends SIGKILL, as a crash or the OOM killer would, and waits.
func (n *Node) Kill() error {
	if p := n.process(); p != nil {
		return p.Kill()
	}
	return nil
}

// Stop stops the daemon gracefully (SIGTERM), killing it if it hangs.
func (n *Node) Stop() error {
	if p := n.process(); p != nil {
		return p.Stop(10 * time.Second)
	}
	return nil
}

// Exec runs a command inside the node: in the daemon's mount namespace too
// while it runs (so `wg` finds its UAPI socket), else in the netns alone.
func (n *Node) Exec(ctx context.Context, argv ...string) (string, error) {
	if pid := n.PID(); pid != 0 {
		return run(ctx, append([]string{"nsenter", "-t", strconv.Itoa(pid), "-m", "-n", "--"}, argv...)...)
	}
	return run(ctx, append([]string{"ip", "netns", "exec", n.NetNS}, argv...)...)
}

// Status asks the daemon's local API.
func (n *Node) Status(ctx context.Context) (netconf.Status, error) {
	return netconf.NewClient(n.Socket).Status(ctx)
}

// WaitReady waits until the daemon reports ready.
func (n *Node) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if !n.Running() {
			return fmt.Errorf("node %s: wirelaced exited; log: %s", n.Name, n.LogTail(15))
		}
		s, err := n.Status(ctx)
		if err == nil && s.Ready {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = s.Reason
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("node %s not ready after %s (last: %s); log: %s", n.Name, timeout, last, n.LogTail(15))
}

// LogTail returns the last lines of the daemon's log.
func (n *Node) LogTail(lines int) string {
	return "\n" + proc.LogTail(n.LogPath, lines)
}

func (n *Node) close() error {
	n.Stop()
	var errs []error
	if n.Kubelet != nil {
		errs = append(errs, n.stopKubelet())
	}
	_, err := run(context.Background(), "ip", "netns", "del", n.NetNS)
	return errors.Join(append(errs, err)...)
}

// Spawn runs a long-lived program inside the node, in a mount namespace of
// its own (private /run/wireguard) like the daemon's. The lab stops it at
// Close.
func (n *Node) Spawn(name string, argv ...string) (*proc.Process, error) {
	p, err := proc.Start(name, filepath.Join(n.Dir, name+".log"), n.Argv(argv[0], argv[1:]...))
	if err != nil {
		return nil, err
	}
	n.lab.defer_(func() error { return p.Stop(5 * time.Second) })
	return p, nil
}

// ExecIn runs a command in the network and mount namespaces of p.
func ExecIn(ctx context.Context, p *proc.Process, argv ...string) (string, error) {
	return run(ctx, append([]string{"nsenter", "-t", strconv.Itoa(p.Pid), "-m", "-n", "--"}, argv...)...)
}

// InNode is path as the node's processes see it (its mount namespace has
// its own /run, /var/lib and /var/log), as a path the host can open.
func (n *Node) InNode(path string) string {
	if n.Kubelet == nil || n.Kubelet.containerd == nil {
		return path
	}
	return filepath.Join("/proc", strconv.Itoa(n.Kubelet.containerd.Pid), "root", path)
}

// Lab is the lab the node belongs to.
func (n *Node) Lab() *Lab { return n.lab }

// metricsPort is wirelaced's default metrics port, on the node's loopback.
const metricsPort = 9471

// Metrics returns what the daemon serves on its metrics listener, in the
// Prometheus text format.
func (n *Node) Metrics(ctx context.Context) (string, error) {
	return Scrape(ctx, n.NetNS, metricsPort)
}

// Scrape fetches /metrics from 127.0.0.1:port inside the network namespace
// netns (a node's daemon, a relay).
func Scrape(ctx context.Context, netns string, port int) (string, error) {
	b, err := Get(ctx, netns, port, "/metrics", 5*time.Second)
	return string(b), err
}

// Get fetches path from 127.0.0.1:port inside the network namespace netns:
// a daemon's metrics, or its /debug/pprof when it runs with --profiling.
func Get(ctx context.Context, netns string, port int, path string, timeout time.Duration) ([]byte, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: k8s.DialerIn(netns)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", path, netns, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s in %s: HTTP %d: %v", path, netns, resp.StatusCode, err)
	}
	return b, nil
}

// Debug fetches path (/debug/pprof/...) from the daemon, which serves it
// when started with --profiling.
func (n *Node) Debug(ctx context.Context, path string, timeout time.Duration) ([]byte, error) {
	return Get(ctx, n.NetNS, metricsPort, path, timeout)
}

// Metric returns the daemon's value of the unlabelled metric name.
func (n *Node) Metric(ctx context.Context, name string) (float64, error) {
	m, err := n.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	v, err := MetricValues(m, name)
	if err != nil {
		return 0, err
	}
	x, ok := v[""]
	if !ok {
		return 0, fmt.Errorf("node %s: no metric %s", n.Name, name)
	}
	return x, nil
}

// MetricValues returns the samples of the metric family name in a
// Prometheus text exposition, keyed by their label values joined with
// spaces, in the order of the label names (sorted, as exposed): e.g.
// "leases update" for wirelace_api_requests_total{resource, verb}.
func MetricValues(exposition, name string) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := map[string]float64{}
	f := families[name]
	if f == nil {
		return out, nil
	}
	for _, m := range f.GetMetric() {
		var key []string
		for _, l := range m.GetLabel() {
			key = append(key, l.GetValue())
		}
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		out[strings.Join(key, " ")] = v
	}
	return out, nil
}
