package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/e2e/proc"
)

// A kubelet node (WithDaemonSet) is a lab node that is a real Kubernetes node,
// as users run Wirelace: a kubelet registers its Node and runs pods through
// containerd and runc, and containerd runs the CNI plugins it finds in the
// node's CNI conf dir, in the node's network namespace, as on a machine.
//
// Several nodes share one kernel, so what a machine has once is made per
// node (each was a collision, or a failure, when nodes shared it):
//   - one mount namespace, shared by the node's containerd and kubelet (and
//     through them every shim and container), with the node's own /var/lib,
//     /var/log (kubelet's hard-coded paths, containerd's root, libcni's
//     cache, pod logs) and a tmpfs on /run (containerd's state, shim sockets,
//     runc's state, pod network namespaces), and an empty /etc/containerd.
//     It dies with its last process, and its mounts with it: nothing is
//     mounted in the host's namespace;
//   - a cgroup parent in every hierarchy (cgroupfs driver; the machine has
//     cgroup v1), holding the node's daemons, shims and pods, so Close can
//     find and end every process of the node, and remove the cgroups;
//   - a CNI conf dir and bin dir.

// KubeletNode is the Kubernetes side of a kubelet node.
type KubeletNode struct {
	// CNIConfDir and CNIBinDir are the node's /etc/cni/net.d and
	// /opt/cni/bin: containerd loads the network from the first and runs
	// plugins from the second. The conf dir starts empty, so the node is
	// NotReady until a CNI config is installed (the chart's installer).
	CNIConfDir, CNIBinDir string
	// RootDir holds the node's own /var/lib and /var/log.
	RootDir string
	// ContainerdSocket is containerd's API (kubelet's CRI endpoint, ctr's).
	ContainerdSocket string
	// Kubeconfig is the kubelet's: a certificate for system:node:<name>.
	Kubeconfig string
	// Logs of containerd and the kubelet.
	ContainerdLog, KubeletLog string

	cgroup     string // the node's cgroup parent, below every hierarchy's root
	containerd *proc.Process
	kubelet    *proc.Process
}

// Timeouts of a kubelet node's start.
const (
	containerdReadyTimeout = 30 * time.Second
	// registerTimeout covers the kubelet's start, its Node registration and
	// kube-controller-manager's pod CIDR allocation.
	registerTimeout  = 90 * time.Second
	kubeletStopGrace = 5 * time.Second
)

// RequireRunc fails, saying how to fix it, when runc is not on PATH:
// containerd's shim runs containers with it. It is Debian's package (it needs
// cgo and libseccomp, so it is not built like the rest), installed by
// e2e/deps.sh.
func RequireRunc() error {
	if _, err := exec.LookPath("runc"); err != nil {
		return errors.New("runc is not on PATH; kubelet nodes need it: run make deps (as root)")
	}
	return nil
}

// checkKubeletOptions rejects what a kubelet node cannot do.
func (l *Lab) checkKubeletOptions(o nodeOptions) error {
	switch {
	case !l.opts.Helm:
		return errors.New("a node WithDaemonSet needs a lab made with Options.Helm (controllers, the chart)")
	case o.obj.Spec.PodCIDRs != nil:
		return errors.New("a kubelet node gets its pod CIDRs from kube-controller-manager; WithPodCIDRs does not apply")
	case o.obj.Annotations != nil:
		return errors.New("a kubelet node registers its own Node; WithAnnotations does not apply (annotate it after AddNode)")
	}
	return nil
}

// newKubeletNode fills in the paths of n's Kubernetes side.
func newKubeletNode(n *Node) *KubeletNode {
	k := &KubeletNode{
		CNIConfDir:       filepath.Dir(n.confListPath()),
		CNIBinDir:        filepath.Join(n.Dir, "cni", "bin"),
		RootDir:          filepath.Join(n.Dir, "root"),
		ContainerdSocket: filepath.Join(n.Dir, "containerd.sock"),
		Kubeconfig:       filepath.Join(n.Dir, "kubelet.kubeconfig"),
		ContainerdLog:    filepath.Join(n.Dir, "containerd.log"),
		KubeletLog:       filepath.Join(n.Dir, "kubelet.log"),
		// The netns name: unique per run and node, and swept by prefix.
		cgroup: n.NetNS,
	}
	return k
}

// startKubelet starts the node's containerd and kubelet in its network
// namespace and returns its Node once the kubelet registered it and
// kube-controller-manager allocated its pod CIDRs (wirelaced reads them at
// start). n.Kubelet is set first, so that Close cleans up whatever started.
func (l *Lab) startKubelet(ctx context.Context, n *Node) (*corev1.Node, error) {
	k := n.Kubelet
	for _, d := range []string{k.CNIConfDir, k.CNIBinDir, filepath.Join(k.RootDir, "var", "lib"), filepath.Join(k.RootDir, "var", "log"),
		l.HostCNIConfDir(), l.HostCNIBinDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := l.fillCNIBinDir(k.CNIBinDir); err != nil {
		return nil, err
	}
	if err := makeCgroups(k.cgroup); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	// What kubeadm's preflight asks of a node, and what wirelaced cannot
	// do itself in an unprivileged container (/proc/sys is read-only).
	if _, err := run(ctx, "ip", "netns", "exec", n.NetNS, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); err != nil {
		return nil, fmt.Errorf("node %s: forwarding: %w", n.Name, err)
	}
	if err := l.CP.WriteNodeKubeconfig(k.Kubeconfig, n.Name); err != nil {
		return nil, err
	}
	config := filepath.Join(n.Dir, "containerd.toml")
	if err := os.WriteFile(config, []byte(containerdConfig(k)), 0o644); err != nil {
		return nil, err
	}
	kubeletConfig := filepath.Join(n.Dir, "kubelet.yaml")
	if err := os.WriteFile(kubeletConfig, []byte(kubeletConfigYAML(n)), 0o644); err != nil {
		return nil, err
	}
	imgs, err := l.images(ctx)
	if err != nil {
		return nil, err
	}

	// containerd makes the node's mount namespace; the kubelet joins it.
	k.containerd, err = proc.Start("containerd "+n.Name, k.ContainerdLog, append(
		[]string{"nsenter", "--net=" + netnsPath(n.NetNS), "--", "unshare", "--mount", "--propagation", "slave", "--",
			"sh", "-c", n.nodeMountScript() + joinCgroupScript(k.cgroup) + "exec \"$@\"", "sh",
			"env", "PATH=" + filepath.Dir(l.nodeBins.Containerd) + ":" + os.Getenv("PATH")},
		l.nodeBins.Containerd, "--config", config))
	if err != nil {
		return nil, err
	}
	if err := n.waitContainerd(ctx); err != nil {
		return nil, err
	}
	if err := n.importImages(ctx, imgs); err != nil {
		return nil, err
	}
	k.kubelet, err = proc.Start("kubelet "+n.Name, k.KubeletLog, []string{
		"nsenter", "--target", strconv.Itoa(k.containerd.Pid), "--mount", "--net", "--",
		"sh", "-c", joinCgroupScript(k.cgroup) + "exec \"$@\"", "sh",
		l.nodeBins.Kubelet, "--config", kubeletConfig, "--kubeconfig", k.Kubeconfig,
		"--hostname-override", n.Name, "--node-ip", n.IP.String(), "--v=2",
	})
	if err != nil {
		return nil, err
	}
	return n.waitRegistered(ctx)
}

// netnsPath is the file `ip netns add` made for a namespace.
func netnsPath(name string) string { return "/run/netns/" + name }

// nodeMountScript is the shell that sets up the node's mount namespace (see
// the comment at the top of this file).
func (n *Node) nodeMountScript() string {
	root := n.Kubelet.RootDir
	return "set -e\n" +
		"mount -t tmpfs -o mode=0755 wirelace-lab /run\n" +
		"mount --bind " + shellQuote(filepath.Join(root, "var", "lib")) + " /var/lib\n" +
		"mount --bind " + shellQuote(filepath.Join(root, "var", "log")) + " /var/log\n" +
		// containerd imports /etc/containerd/conf.d/*.toml by default: a
		// host's containerd configuration is not the node's.
		"if [ -d /etc/containerd ]; then mount -t tmpfs -o mode=0755 wirelace-lab /etc/containerd; fi\n" +
		// One path for every node's CNI dirs, as /etc/cni/net.d is on
		// machines: a DaemonSet's hostPath is the same on all nodes.
		"mount --bind " + shellQuote(n.Kubelet.CNIConfDir) + " " + shellQuote(n.lab.HostCNIConfDir()) + "\n" +
		"mount --bind " + shellQuote(n.Kubelet.CNIBinDir) + " " + shellQuote(n.lab.HostCNIBinDir()) + "\n"
}

// HostCNIConfDir and HostCNIBinDir are where every kubelet node sees its
// own CNI conf and bin dirs (its /etc/cni/net.d and /opt/cni/bin): one
// path for all nodes, bind-mounted in each node's mount namespace, so that
// the chart's cni.confDir and cni.binDir fit every node. (The host's real
// /etc/cni/net.d is never touched.)
func (l *Lab) HostCNIConfDir() string {
	return filepath.Join(l.Dir, "node-paths", "etc", "cni", "net.d")
}

// HostCNIBinDir: see HostCNIConfDir.
func (l *Lab) HostCNIBinDir() string { return filepath.Join(l.Dir, "node-paths", "opt", "cni", "bin") }

// joinCgroupScript moves the shell into the node's "system" cgroups before
// it execs the daemon, so that the daemon and everything it starts (shims,
// and through them containers) belong to the node from the first instant.
func joinCgroupScript(cgroup string) string {
	var b strings.Builder
	for _, h := range cgroupHierarchies() {
		fmt.Fprintf(&b, "echo $$ > %s\n", shellQuote(filepath.Join(h, cgroup, "system", "cgroup.procs")))
	}
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// fillCNIBinDir links the CNI plugins the runtime needs into the node's bin
// dir: loopback (containerd sets up every pod's lo with it) and the
// reference plugins the Makefile builds. wirelace-install copies Wirelace's
// own plugins there, as on a real node.
func (l *Lab) fillCNIBinDir(dir string) error {
	plugins := map[string]string{"loopback": l.nodeBins.Loopback}
	ref := l.CNIPath()[1]
	for _, name := range []string{"bridge", "ptp", "host-local"} {
		if _, err := os.Stat(filepath.Join(ref, name)); err == nil {
			plugins[name] = filepath.Join(ref, name)
		}
	}
	for name, src := range plugins {
		if err := os.Symlink(src, filepath.Join(dir, name)); err != nil && !os.IsExist(err) {
			return fmt.Errorf("link CNI plugin %s: %w", name, err)
		}
	}
	return nil
}

// containerdConfig is the node's containerd configuration (version 4, as
// containerd 2.4 writes it); what it leaves out is containerd's default
// (runc through the v2 shim, cgroupfs, overlayfs). Root and state stay at
// their defaults, which are the node's own /var/lib and /run in its mount
// namespace; the API sockets are in the node's directory, for ctr and
// debugging from the host.
func containerdConfig(k *KubeletNode) string {
	return fmt.Sprintf(`version = 4

[plugins.'io.containerd.server.v1.grpc']
  address = %[1]q
[plugins.'io.containerd.server.v1.ttrpc']
  address = %[2]q

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = %[3]q

[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  # The machine withholds CAP_SYS_RESOURCE: without this, runc fails every
  # sandbox setting the pause process's oom_score_adj below containerd's.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[4]q]
    conf_dir = %[5]q
    max_conf_num = 1
`, k.ContainerdSocket, k.ContainerdSocket+".ttrpc", PauseImage, k.CNIBinDir, k.CNIConfDir)
}

// kubeletConfigYAML is the node's KubeletConfiguration.
func kubeletConfigYAML(n *Node) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The machine has cgroup v1, which kubelet 1.35+ refuses unless told, and
# the cgroupfs driver (no systemd); every node has its own cgroup parent.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%[1]s
failSwapOn: false
containerRuntimeEndpoint: unix://%[2]s
# The API server reaches the kubelet (logs, exec) at the node's InternalIP.
# Anonymous and unchecked: the lab's API server has no kubelet client
# certificate, and only the lab's namespaces can reach this port.
address: %[3]s
port: 10250
readOnlyPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# No cluster DNS in the lab; pods get no resolver configuration.
resolvConf: ""
clusterDomain: cluster.local
# Readiness changes (a CNI config installed) show within seconds.
nodeStatusUpdateFrequency: 2s
# The lab's images cannot be pulled again: never collect them; and the
# shared disk's fill level must not evict pods.
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
`, n.Kubelet.cgroup, n.Kubelet.ContainerdSocket, n.IP)
}

// waitContainerd waits until containerd answers on its socket.
func (n *Node) waitContainerd(ctx context.Context) error {
	k := n.Kubelet
	deadline := time.Now().Add(containerdReadyTimeout)
	for {
		if k.containerd.Exited() {
			return fmt.Errorf("node %s: containerd exited: %v\n%s", n.Name, k.containerd.Err(), k.containerd.LogTail(20))
		}
		_, err := run(ctx, n.lab.nodeBins.Ctr, "--address", k.ContainerdSocket, "version")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: containerd not serving after %s: %v\n%s", n.Name, containerdReadyTimeout, err, k.containerd.LogTail(20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitRegistered waits until the kubelet registered the Node and it has
// pod CIDRs.
func (n *Node) waitRegistered(ctx context.Context) (*corev1.Node, error) {
	k := n.Kubelet
	deadline := time.Now().Add(registerTimeout)
	last := "not registered"
	for {
		for _, p := range []*proc.Process{k.containerd, k.kubelet} {
			if p.Exited() {
				return nil, fmt.Errorf("node %s: %s exited: %v\n%s", n.Name, p.Name, p.Err(), p.LogTail(20))
			}
		}
		node, err := n.lab.Core.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		switch {
		case err == nil && len(node.Spec.PodCIDRs) > 0:
			return node, nil
		case err == nil:
			last = "registered, no pod CIDRs allocated yet"
		case !apierrors.IsNotFound(err):
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("node %s: kubelet did not register it within %s (%s)\n%s", n.Name, registerTimeout, last, k.kubelet.LogTail(20))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// NodeReady returns the Ready condition the kubelet reports for the node:
// whether it is True, and its message.
func (n *Node) NodeReady(ctx context.Context) (bool, string, error) {
	node, err := n.lab.Core.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return false, "", err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, c.Message, nil
		}
	}
	return false, "no Ready condition yet", nil
}

// WaitNodeReady waits until the Node is Ready.
func (n *Node) WaitNodeReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ready, msg, err := n.NodeReady(ctx)
		if err == nil && ready {
			return nil
		}
		if err != nil {
			msg = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Node %s not Ready after %s: %s", n.Name, timeout, msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// PodLogs returns what the containers of a pod on this node wrote, from the
// kubelet's log files (CRI format: time, stream, tag, line): the API server
// cannot reach a kubelet behind a NAT for `kubectl logs`.
func (n *Node) PodLogs(namespace, pod string) string {
	if n.Kubelet == nil {
		return ""
	}
	files, _ := filepath.Glob(filepath.Join(n.Kubelet.RootDir, "var", "log", "pods", namespace+"_"+pod+"_*", "*", "*.log"))
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		b.Write(data)
	}
	return b.String()
}

// stopKubelet stops the kubelet and containerd, then ends every process
// left in the node's cgroups (shims, containers) and removes the cgroups.
// Their mount namespace, with the pods' network namespaces, goes with the
// last process.
func (n *Node) stopKubelet() error {
	k := n.Kubelet
	var errs []error
	for _, p := range []*proc.Process{k.kubelet, k.containerd} {
		if p != nil {
			errs = append(errs, p.Stop(kubeletStopGrace))
		}
	}
	errs = append(errs, removeCgroups(k.cgroup))
	return errors.Join(errs...)
}

// cgroupHierarchies lists the mounted cgroup hierarchies: each v1
// controller's (and the named and hybrid-unified ones), or the single
// unified one on a cgroup v2 machine.
func cgroupHierarchies() []string {
	const root = "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err == nil {
		return []string{root}
	}
	var out []string
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		h := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err == nil && e.IsDir() {
			out = append(out, h)
		}
	}
	return out
}

// makeCgroups creates the node's cgroup parent and its "system" child (for
// containerd and the kubelet) in every hierarchy. A new v1 cpuset has no
// CPUs or memory nodes, and takes no process, until given its parent's.
func makeCgroups(cgroup string) error {
	for _, h := range cgroupHierarchies() {
		parent := h
		for _, dir := range []string{filepath.Join(h, cgroup), filepath.Join(h, cgroup, "system")} {
			if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
				return fmt.Errorf("create cgroup %s: %w", dir, err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(parent, f))
				if err != nil {
					continue // not a cpuset hierarchy
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("set %s of %s: %w", f, dir, err)
				}
			}
			parent = dir
		}
	}
	return nil
}

// removeCgroups SIGKILLs every process in the cgroup subtree (in any
// hierarchy) until none is left, then removes the subtree's directories,
// deepest first.
func removeCgroups(cgroup string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := cgroupPids(cgroup)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v survive SIGKILL", cgroup, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var errs []error
	for _, h := range cgroupHierarchies() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h, cgroup), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- { // WalkDir lists parents first
			if err := rmdirRetry(dirs[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// rmdirRetry removes an empty cgroup; one whose last process just died can
// be busy for a moment.
func rmdirRetry(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

// cgroupPids lists the processes in a cgroup subtree, in every hierarchy.
func cgroupPids(cgroup string) []int {
	seen := map[int]bool{}
	var out []int
	for _, h := range cgroupHierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, cgroup), func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					out = append(out, pid)
				}
			}
			return nil
		})
	}
	return out
}

// sweepCgroups removes the cgroups of kubelet nodes of lab runs whose
// process is gone, killing what still runs in them: shims and containers
// outlive a killed run (only containerd and the kubelet die with it).
func sweepCgroups() []string {
	seen := map[string]bool{}
	var swept []string
	for _, h := range cgroupHierarchies() {
		entries, _ := os.ReadDir(h)
		for _, e := range entries {
			m := prefixRE.FindStringSubmatch(e.Name())
			if !e.IsDir() || m == nil || alive(m[1]) || seen[e.Name()] {
				continue
			}
			seen[e.Name()] = true
			if removeCgroups(e.Name()) == nil {
				swept = append(swept, "cgroup "+e.Name())
			}
		}
	}
	return swept
}
