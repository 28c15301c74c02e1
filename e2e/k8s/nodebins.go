package k8s

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Versions of the node software the lab runs for real Kubernetes nodes. Like
// kube-apiserver they are built from source through the Go module proxy:
// Debian's containerd is a 1.x that kubelet 1.38 no longer supports, and
// nothing on the machine ships a kubelet. runc is the one piece taken from
// Debian (it needs cgo and libseccomp); see RequireRunc.
const (
	ContainerdVersion = "v2.4.2"
	// CNIPluginsVersion is the reference plugins' version in the
	// repository's go.mod; the runtime needs their loopback plugin.
	CNIPluginsVersion = "v1.9.1"
)

// NodeBinaries are absolute paths of the built executables a lab cluster with
// real nodes needs besides kube-apiserver and etcd.
type NodeBinaries struct {
	// Controllers: they turn stored objects into running pods.
	ControllerManager, Scheduler string
	// The node: kubelet, and containerd with its runc shim and CLI.
	Kubelet, Containerd, Shim, Ctr string
	// Loopback is the CNI plugin containerd's CRI runs for every pod's lo.
	Loopback string
	// Kubectl is what a user of the lab's cluster runs.
	Kubectl string
}

const (
	kubeletPkg           = "k8s.io/kubernetes/cmd/kubelet"
	controllerManagerPkg = "k8s.io/kubernetes/cmd/kube-controller-manager"
	schedulerPkg         = "k8s.io/kubernetes/cmd/kube-scheduler"
	kubectlPkg           = "k8s.io/kubernetes/cmd/kubectl"
	kubeNodeWrapModule   = "wirelace.lab/kube-node-build"

	containerdModule     = "github.com/containerd/containerd/v2"
	containerdWrapModule = "wirelace.lab/containerd-build"
	// The storage drivers excluded need cgo or kernel features the lab does
	// not use; containerd's own static release builds drop them the same way.
	containerdTags = "no_btrfs,no_devmapper,no_zfs,no_aufs"

	cniPluginsModule     = "github.com/containernetworking/plugins"
	cniPluginsWrapModule = "wirelace.lab/cni-plugins-build"
)

// buildTarget is one executable of a build group and how to check it.
type buildTarget struct {
	pkg string
	// versionArgs run the built binary; its output must contain want.
	versionArgs []string
	want        string
}

func (t buildTarget) name() string { return filepath.Base(t.pkg) }

// nodeStampText and runtimeStampText identify complete builds (see
// stampText for the scheme).
func nodeStampText() string {
	return fmt.Sprintf("wirelace e2e/k8s node binaries v2\nkubernetes %s\nplatform %s/%s\ncgo 0\n",
		KubernetesVersion, runtime.GOOS, runtime.GOARCH)
}

func runtimeStampText() string {
	return fmt.Sprintf("wirelace e2e/k8s runtime binaries v1\ncontainerd %s tags %s\ncni-plugins %s\nplatform %s/%s\ncgo 0\n",
		ContainerdVersion, containerdTags, CNIPluginsVersion, runtime.GOOS, runtime.GOARCH)
}

// EnsureNodeBinaries builds kubelet, kube-controller-manager and
// kube-scheduler into cacheDir/k8s-node-<KubernetesVersion>/bin, and
// containerd, its runc shim, ctr and the CNI loopback plugin into
// cacheDir/containerd-<ContainerdVersion>/bin, or reuses what a stamp file
// there says is complete. The two groups build concurrently: fetching one's
// modules overlaps compiling the other's. Progress goes to progress (may be
// nil), as for EnsureBinaries.
func EnsureNodeBinaries(ctx context.Context, cacheDir string, progress io.Writer) (NodeBinaries, error) {
	kubeRoot, err := filepath.Abs(filepath.Join(cacheDir, "k8s-node-"+KubernetesVersion))
	if err != nil {
		return NodeBinaries{}, fmt.Errorf("resolve cache dir: %w", err)
	}
	rtRoot, err := filepath.Abs(filepath.Join(cacheDir, "containerd-"+ContainerdVersion))
	if err != nil {
		return NodeBinaries{}, fmt.Errorf("resolve cache dir: %w", err)
	}
	kubeBin, rtBin := filepath.Join(kubeRoot, "bin"), filepath.Join(rtRoot, "bin")
	b := NodeBinaries{
		Kubelet:           filepath.Join(kubeBin, "kubelet"),
		ControllerManager: filepath.Join(kubeBin, "kube-controller-manager"),
		Scheduler:         filepath.Join(kubeBin, "kube-scheduler"),
		Kubectl:           filepath.Join(kubeBin, "kubectl"),
		Containerd:        filepath.Join(rtBin, "containerd"),
		Shim:              filepath.Join(rtBin, "containerd-shim-runc-v2"),
		Ctr:               filepath.Join(rtBin, "ctr"),
		Loopback:          filepath.Join(rtBin, "loopback"),
	}
	if progress != nil {
		// Both groups write lines to it; callers' writers need not be
		// safe for concurrent use.
		progress = &lockedWriter{w: progress}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		p := newProgressWriter(progress, "[kubelet-build] ")
		return ensureGroup(gctx, kubeRoot, nodeStampText(), []string{b.Kubelet, b.ControllerManager, b.Scheduler, b.Kubectl}, p,
			"kubelet, kube-controller-manager, kube-scheduler and kubectl "+KubernetesVersion, buildKubeNode)
	})
	g.Go(func() error {
		p := newProgressWriter(progress, "[containerd-build] ")
		return ensureGroup(gctx, rtRoot, runtimeStampText(), []string{b.Containerd, b.Shim, b.Ctr, b.Loopback}, p,
			"containerd "+ContainerdVersion+" and CNI loopback "+CNIPluginsVersion, buildRuntime)
	})
	if err := g.Wait(); err != nil {
		return NodeBinaries{}, err
	}
	return b, nil
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// ensureGroup is EnsureBinaries' stamp-and-lock procedure for one group of
// binaries in root/bin, built by build(ctx, root, binDir, p).
func ensureGroup(ctx context.Context, root, stampText string, bins []string, p *progressWriter, what string,
	build func(ctx context.Context, root, binDir string, p *progressWriter) error) error {
	binDir := filepath.Join(root, "bin")
	stamp := filepath.Join(binDir, "stamp")
	if groupUpToDate(stamp, stampText, bins) {
		p.Printf("reusing %s from %s", what, binDir)
		return nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", binDir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(root, ".lock"), p)
	if err != nil {
		return err
	}
	defer unlock()
	if groupUpToDate(stamp, stampText, bins) { // built by another process while we waited
		p.Printf("reusing %s from %s", what, binDir)
		return nil
	}
	if err := os.Remove(stamp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale stamp: %w", err)
	}
	if stale, _ := filepath.Glob(filepath.Join(binDir, "*.tmp-*")); len(stale) > 0 {
		p.Printf("removing %d leftover(s) of interrupted builds", len(stale))
		for _, f := range stale {
			_ = os.RemoveAll(f)
		}
	}
	start := time.Now()
	p.Printf("building %s into %s (cold: minutes)", what, binDir)
	if err := build(ctx, root, binDir, p); err != nil {
		return fmt.Errorf("build %s: %w", what, err)
	}
	if err := writeFileAtomic(stamp, []byte(stampText), 0o644); err != nil {
		return fmt.Errorf("write stamp: %w", err)
	}
	p.Printf("built %s in %s", what, time.Since(start).Round(time.Second))
	return nil
}

// groupUpToDate reports whether the stamp says stampText and every binary is
// an executable file.
func groupUpToDate(stamp, stampText string, bins []string) bool {
	b, err := os.ReadFile(stamp)
	if err != nil || string(b) != stampText {
		return false
	}
	for _, f := range bins {
		fi, err := os.Stat(f)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// kubeLdflags stamps the Kubernetes version into a binary, as upstream's
// build does (see buildAPIServer).
func kubeLdflags() string {
	minor := strings.SplitN(strings.TrimPrefix(KubernetesVersion, "v"), ".", 3)[1]
	return fmt.Sprintf("-s -w -X k8s.io/component-base/version.gitVersion=%s"+
		" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=%s"+
		" -X k8s.io/component-base/version.gitTreeState=clean", KubernetesVersion, minor)
}

// buildKubeNode builds the three Kubernetes binaries with one go build in
// one wrapper module (see gomod.go): they share most packages, and one go
// command compiles each of those once and links the three in parallel.
func buildKubeNode(ctx context.Context, root, binDir string, p *progressWriter) error {
	srcDir := filepath.Join(root, "src")
	if err := writeKubeWrapper(ctx, srcDir, kubeNodeWrapModule, p); err != nil {
		return err
	}
	targets := []buildTarget{
		{pkg: kubeletPkg, versionArgs: []string{"--version"}, want: KubernetesVersion},
		{pkg: controllerManagerPkg, versionArgs: []string{"--version"}, want: KubernetesVersion},
		{pkg: schedulerPkg, versionArgs: []string{"--version"}, want: KubernetesVersion},
		// The lab's users' tool: kubectl logs/exec through the API server.
		{pkg: kubectlPkg, versionArgs: []string{"version", "--client"}, want: KubernetesVersion},
	}
	p.Printf("step 3/4: resolve dependencies")
	if err := runGo(ctx, srcDir, p, nil, append([]string{"get"}, versioned(targets, KubernetesVersion)...)...); err != nil {
		return err
	}
	p.Printf("step 4/4: go build kubelet, kube-controller-manager, kube-scheduler, kubectl (cold: ~8 min on 2 cores)")
	return buildTargets(ctx, srcDir, binDir, targets, kubeLdflags(), "", p)
}

// buildRuntime builds containerd, its runc shim and ctr in one wrapper
// module, and the CNI loopback plugin in another: a module of its own keeps
// each at the dependency versions its upstream release was tested with.
func buildRuntime(ctx context.Context, root, binDir string, p *progressWriter) error {
	ldflags := fmt.Sprintf("-s -w -X %[1]s/version.Version=%[2]s -X %[1]s/version.Package=%[1]s", containerdModule, ContainerdVersion)
	err := buildSimpleModule(ctx, filepath.Join(root, "src", "containerd"), containerdWrapModule, containerdModule, ContainerdVersion,
		binDir, ldflags, containerdTags, []buildTarget{
			{pkg: containerdModule + "/cmd/containerd", versionArgs: []string{"--version"}, want: ContainerdVersion},
			{pkg: containerdModule + "/cmd/containerd-shim-runc-v2", versionArgs: []string{"-v"}, want: ContainerdVersion},
			{pkg: containerdModule + "/cmd/ctr", versionArgs: []string{"--version"}, want: ContainerdVersion},
		}, p)
	if err != nil {
		return err
	}
	// A CNI plugin run without CNI_COMMAND prints its "about" line.
	ldflags = fmt.Sprintf("-s -w -X %s/pkg/utils/buildversion.BuildVersion=%s", cniPluginsModule, CNIPluginsVersion)
	return buildSimpleModule(ctx, filepath.Join(root, "src", "cni-plugins"), cniPluginsWrapModule, cniPluginsModule, CNIPluginsVersion,
		binDir, ldflags, "", []buildTarget{
			{pkg: cniPluginsModule + "/plugins/main/loopback", want: CNIPluginsVersion},
		}, p)
}

// buildSimpleModule builds targets of module@version, a module without
// replace directives, through a wrapper module in srcDir that requires it.
func buildSimpleModule(ctx context.Context, srcDir, wrapModule, module, version, binDir, ldflags, tags string,
	targets []buildTarget, p *progressWriter) error {
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return fmt.Errorf("create wrapper module dir: %w", err)
	}
	gomod := fmt.Sprintf("// Generated by github.com/wirelace/wirelace/e2e/k8s; do not edit.\nmodule %s\n\ngo 1.21\n\nrequire %s %s\n",
		wrapModule, module, version)
	if err := os.WriteFile(filepath.Join(srcDir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return fmt.Errorf("write wrapper go.mod: %w", err)
	}
	p.Printf("%s: resolve dependencies", module)
	if err := runGo(ctx, srcDir, p, nil, append([]string{"get"}, versioned(targets, version)...)...); err != nil {
		return err
	}
	p.Printf("%s: go build", module)
	return buildTargets(ctx, srcDir, binDir, targets, ldflags, tags, p)
}

func versioned(targets []buildTarget, version string) []string {
	var out []string
	for _, t := range targets {
		out = append(out, t.pkg+"@"+version)
	}
	return out
}

// buildTargets builds every target with one go build into a temporary
// directory in binDir, checks that each runs and reports its version, and
// only then renames each into binDir: an interrupted or broken build never
// leaves a file under a final name.
func buildTargets(ctx context.Context, srcDir, binDir string, targets []buildTarget, ldflags, tags string, p *progressWriter) error {
	tmp := filepath.Join(binDir, fmt.Sprintf("build.tmp-%d", os.Getpid()))
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer os.RemoveAll(tmp)
	args := []string{"build", "-v", "-trimpath", "-ldflags", ldflags}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "-o", tmp+"/")
	for _, t := range targets {
		args = append(args, t.pkg)
	}
	if err := runGo(ctx, srcDir, p, nil, args...); err != nil {
		return err
	}
	for _, t := range targets {
		built := filepath.Join(tmp, t.name())
		if err := checkVersion(ctx, built, t); err != nil {
			return err
		}
	}
	for _, t := range targets {
		if err := os.Rename(filepath.Join(tmp, t.name()), filepath.Join(binDir, t.name())); err != nil {
			return fmt.Errorf("install %s: %w", t.name(), err)
		}
	}
	return nil
}

// checkVersion runs bin with the target's version arguments and an empty
// environment and looks for the version in what it prints. The exit status
// is not checked: a CNI plugin that prints its version exits non-zero.
func checkVersion(ctx context.Context, bin string, t buildTarget) error {
	cmd := exec.CommandContext(ctx, bin, t.versionArgs...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), t.want) {
		return fmt.Errorf("%s %s printed %q (%v), want it to mention %s", t.name(), strings.Join(t.versionArgs, " "),
			strings.TrimSpace(string(out)), err, t.want)
	}
	return nil
}
