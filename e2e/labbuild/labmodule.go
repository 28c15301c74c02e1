package labbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/mod/module"
)

// Every binary the lab builds from source (kube-apiserver and etcd; kubelet,
// the controllers, kubectl, containerd and the CNI loopback plugin; helm) is
// built in one wrapper module, the lab module. One module is one dependency
// graph: minimal version selection picks one version of every module they
// share (client-go and the rest of Kubernetes' staging modules, gRPC,
// protobuf, OpenTelemetry), so the go build cache compiles each of those
// packages once for all of them. Built in a module each, as upstream
// releases them, the same binaries compile about 160 MB of Go source cold;
// in one, about 112 MB. On the two cores of a lab machine that is minutes of
// make test.
//
// The price is that etcd, containerd and helm are built with the newest
// version any of them requires of a shared module (patch or minor releases
// apart; Kubernetes' staging modules at exactly KubernetesVersion), not
// always the one their release pinned. The lab runs them; it does not ship
// them, and its tests check that they work.
//
// The lab module also requires every module the wirelace module requires
// (sharedModules), and the wirelace module keeps its versions at least
// those of the lab module (TestLabModuleSharesWirelaceVersions). Then both
// select the same version of every module they share, and a package both
// build (client-go, k8s.io/api, gRPC, x/net: about 38 of the 46 MB of Go
// source vet and the lab's tests compile) is compiled once for make test,
// not once for each: the go build cache keys a compile by its inputs, and
// the lab builds as the wirelace Makefile does (static, -trimpath; build
// tags change no shared file).
const (
	labModulePath = "wirelace.lab/lab-build"

	// wirelaceModule is the module whose versions the lab module shares.
	wirelaceModule = "github.com/wirelace/wirelace"

	// EtcdVersion is the etcd whose client KubernetesVersion requires, so
	// that the server and the API server's client share their packages.
	EtcdVersion = "v3.7.0"
	etcdModule  = "go.etcd.io/etcd/server/v3"

	// labBuildTags are containerd's: the storage drivers they exclude need
	// cgo or kernel features the lab does not use (containerd's own static
	// release builds drop them the same way). No other binary of the module
	// uses them; they are passed to every build so that all share one set of
	// compiled packages.
	labBuildTags = "no_btrfs,no_devmapper,no_zfs,no_aufs"
)

// buildTarget is one executable built from the lab module and how to check
// it.
type buildTarget struct {
	pkg     string
	version string // the version of pkg's module
	// out names the installed file when it is not go build's default name.
	out string
	// versionArgs run the built binary; its output must contain want.
	versionArgs []string
	want        string
}

// name is the installed file's name.
func (t buildTarget) name() string {
	if t.out != "" {
		return t.out
	}
	return t.built()
}

// built is the name go build -o dir/ gives the executable: the last element
// of the import path, or the one before it when that is a module's major
// version suffix (go.etcd.io/etcd/server/v3 is "server").
func (t buildTarget) built() string {
	if prefix, major, ok := module.SplitPathVersion(t.pkg); ok && major != "" {
		return path.Base(prefix)
	}
	return path.Base(t.pkg)
}

// The lab module's targets, in groups by what needs them: the control plane
// (the lab's first tests need only it), what kubelet nodes run, and helm.
func controlPlaneTargets() []buildTarget {
	return []buildTarget{
		{pkg: apiserverPkg, version: KubernetesVersion, versionArgs: []string{"--version"}, want: KubernetesVersion},
		// etcd's root package is its main package.
		{pkg: etcdModule, version: EtcdVersion, out: "etcd", versionArgs: []string{"--version"}, want: strings.TrimPrefix(EtcdVersion, "v")},
	}
}

func nodeTargets() []buildTarget {
	return []buildTarget{
		{pkg: kubeletPkg, version: KubernetesVersion, versionArgs: []string{"--version"}, want: KubernetesVersion},
		{pkg: controllerManagerPkg, version: KubernetesVersion, versionArgs: []string{"--version"}, want: KubernetesVersion},
		{pkg: schedulerPkg, version: KubernetesVersion, versionArgs: []string{"--version"}, want: KubernetesVersion},
		// The lab's users' tool: kubectl logs/exec through the API server.
		{pkg: kubectlPkg, version: KubernetesVersion, versionArgs: []string{"version", "--client"}, want: KubernetesVersion},
		{pkg: containerdModule + "/cmd/containerd", version: ContainerdVersion, versionArgs: []string{"--version"}, want: ContainerdVersion},
		{pkg: containerdModule + "/cmd/containerd-shim-runc-v2", version: ContainerdVersion, versionArgs: []string{"-v"}, want: ContainerdVersion},
		{pkg: containerdModule + "/cmd/ctr", version: ContainerdVersion, versionArgs: []string{"--version"}, want: ContainerdVersion},
		// A CNI plugin run without CNI_COMMAND prints its "about" line.
		{pkg: cniPluginsModule + "/plugins/main/loopback", version: CNIPluginsVersion, want: CNIPluginsVersion},
	}
}

func helmTargets() []buildTarget {
	// helm has no --version flag: ask it the helm way.
	return []buildTarget{{pkg: helmPkg, version: HelmVersion, versionArgs: []string{"version", "--template", "{{.Version}}"}, want: HelmVersion}}
}

// labStampText identifies a resolved lab module; the groups' stamps include
// it, so that a new recipe rebuilds them too. shared are the requirements
// it takes from the wirelace module: a new version there re-resolves it.
func labStampText(shared []module.Version) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wirelace e2e/k8s lab module v2\nplatform %s/%s\ncgo 0\ntags %s\n", runtime.GOOS, runtime.GOARCH, labBuildTags)
	for _, g := range [][]buildTarget{controlPlaneTargets(), nodeTargets(), helmTargets()} {
		for _, t := range g {
			fmt.Fprintf(&b, "%s@%s\n", t.pkg, t.version)
		}
	}
	for _, m := range shared {
		fmt.Fprintf(&b, "shares %s@%s\n", m.Path, m.Version)
	}
	return b.String()
}

// sharedModules returns the requirements of the wirelace module whose
// .cache directory cacheDir is (the Makefile's and the lab's default), for
// the lab module to require too. A cache elsewhere shares nothing: the
// binaries build the same, only without the shared compiles.
func sharedModules(cacheDir string) ([]module.Version, error) {
	abs, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("resolve cache dir: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(abs), "go.mod"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the wirelace go.mod next to the cache: %w", err)
	}
	path, reqs, err := moduleRequires(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(filepath.Dir(abs), "go.mod"), err)
	}
	if path != wirelaceModule {
		return nil, nil
	}
	return reqs, nil
}

// labLdflags are every binary's version stamps, as their upstream builds
// set them (without them kube-apiserver reports v0.0.0-master, which kubectl
// and client-go's discovery cannot parse, and helm assumes Kubernetes 1.20).
// One set serves every target: the linker ignores -X for a variable the
// binary does not have, and only the link, never the compile, sees them.
func labLdflags() string {
	minor := strings.SplitN(strings.TrimPrefix(KubernetesVersion, "v"), ".", 3)[1]
	vars := []string{
		"k8s.io/component-base/version.gitVersion=" + KubernetesVersion,
		"k8s.io/component-base/version.gitMajor=1",
		"k8s.io/component-base/version.gitMinor=" + minor,
		"k8s.io/component-base/version.gitTreeState=clean",
		containerdModule + "/version.Version=" + ContainerdVersion,
		containerdModule + "/version.Package=" + containerdModule,
		cniPluginsModule + "/pkg/utils/buildversion.BuildVersion=" + CNIPluginsVersion,
		helmModule + "/internal/version.version=" + HelmVersion,
	}
	// The Kubernetes version helm assumes without --kube-version: that of
	// the client-go it is built with, which the lab module pins to
	// KubernetesVersion's staging release.
	for _, pkg := range []string{"pkg/chartutil", "pkg/lint/rules"} {
		vars = append(vars, helmModule+"/"+pkg+".k8sVersionMajor=1", helmModule+"/"+pkg+".k8sVersionMinor="+minor)
	}
	return "-s -w -X " + strings.Join(vars, " -X ")
}

// ensureLabModule writes and resolves the lab module in
// cacheDir/lab-<KubernetesVersion>/src, or reuses it when its stamp matches,
// and returns that directory. Builds only read the module, so any number
// may run in it at once once it is resolved. shared are sharedModules'.
func ensureLabModule(ctx context.Context, cacheDir string, shared []module.Version, p *progressWriter) (string, error) {
	root, err := filepath.Abs(filepath.Join(cacheDir, "lab-"+KubernetesVersion))
	if err != nil {
		return "", fmt.Errorf("resolve cache dir: %w", err)
	}
	src := filepath.Join(root, "src")
	_, err = ensureStamped(ctx, root, filepath.Join(root, "stamp"), labStampText(shared), nil, p, func() error {
		if err := writeKubeWrapper(ctx, src, labModulePath, shared, p); err != nil {
			return err
		}
		var get []string
		for _, g := range [][]buildTarget{controlPlaneTargets(), nodeTargets(), helmTargets()} {
			for _, t := range g {
				get = append(get, t.pkg+"@"+t.version)
			}
		}
		p.Printf("step 3/4: resolve every lab binary's dependencies in one module")
		if err := runGo(ctx, src, p, nil, append([]string{"get"}, get...)...); err != nil {
			return fmt.Errorf("resolve the lab module: %w", err)
		}
		return nil
	})
	return src, err
}
