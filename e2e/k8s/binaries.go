package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Versions of the control plane the lab runs. Both are built from source
// through the Go module proxy, because the lab machine has neither Docker
// nor a package that ships them.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.6.8"
)

// Binaries are absolute paths of built control-plane executables.
type Binaries struct{ APIServer, Etcd string }

const (
	apiserverPkg    = "k8s.io/kubernetes/cmd/kube-apiserver"
	etcdModule      = "go.etcd.io/etcd/server/v3"
	apiserverModule = "wirelace.lab/kube-apiserver-build"
	etcdWrapModule  = "wirelace.lab/etcd-build"
)

// stampText identifies what a bin directory holds. It is written last, after
// both binaries were renamed into place, so a stamp that matches guarantees
// complete binaries of these versions. Bump "v1" when the build recipe
// changes in a way that should force a rebuild.
func stampText() string {
	return fmt.Sprintf("wirelace e2e/k8s binaries v1\nkubernetes %s\netcd %s\nplatform %s/%s\ncgo 0\n",
		KubernetesVersion, EtcdVersion, runtime.GOOS, runtime.GOARCH)
}

// EnsureBinaries builds kube-apiserver and etcd into
// cacheDir/k8s-<KubernetesVersion>/bin, or reuses them when the stamp file
// there records the same versions and both binaries exist. It needs only the
// go command and the module proxy, so it works on a machine with an empty
// module cache. Progress (each step, `go build -v` package lines and a
// heartbeat during long steps) is written to progress, which may be nil.
func EnsureBinaries(ctx context.Context, cacheDir string, progress io.Writer) (Binaries, error) {
	p := newProgressWriter(progress, "[k8s-build] ")
	root, err := filepath.Abs(filepath.Join(cacheDir, "k8s-"+KubernetesVersion))
	if err != nil {
		return Binaries{}, fmt.Errorf("resolve cache dir: %w", err)
	}
	binDir := filepath.Join(root, "bin")
	bins := Binaries{
		APIServer: filepath.Join(binDir, "kube-apiserver"),
		Etcd:      filepath.Join(binDir, "etcd"),
	}
	stamp := filepath.Join(binDir, "stamp")
	if upToDate(stamp, bins) {
		p.Printf("reusing kube-apiserver %s and etcd %s from %s", KubernetesVersion, EtcdVersion, binDir)
		return bins, nil
	}

	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("create %s: %w", binDir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(root, ".lock"), p)
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()
	// Another process may have finished the build while we waited.
	if upToDate(stamp, bins) {
		p.Printf("reusing kube-apiserver %s and etcd %s from %s", KubernetesVersion, EtcdVersion, binDir)
		return bins, nil
	}
	// From here on the directory is being changed: drop the stamp first so an
	// interruption can never leave a stamp next to a mix of old and new files.
	if err := os.Remove(stamp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Binaries{}, fmt.Errorf("remove stale stamp: %w", err)
	}

	// Leftovers of builds that were killed before they could clean up.
	if stale, _ := filepath.Glob(filepath.Join(binDir, "*.tmp-*")); len(stale) > 0 {
		p.Printf("removing %d leftover(s) of interrupted builds", len(stale))
		for _, f := range stale {
			_ = os.Remove(f)
		}
	}

	start := time.Now()
	p.Printf("building kube-apiserver %s and etcd %s into %s (cold: several minutes)", KubernetesVersion, EtcdVersion, binDir)
	if err := buildAPIServer(ctx, filepath.Join(root, "src", "kube-apiserver"), bins.APIServer, p); err != nil {
		return Binaries{}, fmt.Errorf("build kube-apiserver %s: %w", KubernetesVersion, err)
	}
	if err := buildEtcd(ctx, filepath.Join(root, "src", "etcd"), bins.Etcd, p); err != nil {
		return Binaries{}, fmt.Errorf("build etcd %s: %w", EtcdVersion, err)
	}
	if err := writeFileAtomic(stamp, []byte(stampText()), 0o644); err != nil {
		return Binaries{}, fmt.Errorf("write stamp: %w", err)
	}
	p.Printf("built kube-apiserver and etcd in %s", time.Since(start).Round(time.Second))
	return bins, nil
}

// upToDate reports whether the stamp matches this package's versions and
// both binaries are present as executable files.
func upToDate(stamp string, bins Binaries) bool {
	b, err := os.ReadFile(stamp)
	if err != nil || string(b) != stampText() {
		return false
	}
	for _, f := range []string{bins.APIServer, bins.Etcd} {
		fi, err := os.Stat(f)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// writeKubeWrapper writes, in srcDir, a wrapper module named module that
// requires k8s.io/kubernetes at KubernetesVersion with its staging modules
// replaced by their published versions (steps 1 and 2 of a build; see
// gomod.go for why the wrapper is needed).
func writeKubeWrapper(ctx context.Context, srcDir, module string, p *progressWriter) error {
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return fmt.Errorf("create wrapper module dir: %w", err)
	}
	// A minimal module to run `go mod download` in: outside any module the go
	// command could pick up an enclosing repository's go.mod (the default
	// cache lives inside the wirelace repository) and touch its go.sum.
	bootstrap := fmt.Sprintf("module %s\n\ngo 1.21\n", module)
	if err := os.WriteFile(filepath.Join(srcDir, "go.mod"), []byte(bootstrap), 0o644); err != nil {
		return fmt.Errorf("write bootstrap go.mod: %w", err)
	}
	p.Printf("step 1/4: fetch k8s.io/kubernetes@%s go.mod", KubernetesVersion)
	kubeGoMod, err := downloadGoMod(ctx, srcDir, "k8s.io/kubernetes@"+KubernetesVersion, p)
	if err != nil {
		return err
	}
	gomod, err := wrapperGoMod(module, kubeGoMod, KubernetesVersion)
	if err != nil {
		return err
	}
	p.Printf("step 2/4: write wrapper module %s", filepath.Join(srcDir, "go.mod"))
	if err := os.WriteFile(filepath.Join(srcDir, "go.mod"), gomod, 0o644); err != nil {
		return fmt.Errorf("write wrapper go.mod: %w", err)
	}
	return nil
}

// buildAPIServer builds kube-apiserver through a wrapper module in srcDir.
func buildAPIServer(ctx context.Context, srcDir, dst string, p *progressWriter) error {
	if err := writeKubeWrapper(ctx, srcDir, apiserverModule, p); err != nil {
		return err
	}
	p.Printf("step 3/4: resolve dependencies of %s", apiserverPkg)
	if err := runGo(ctx, srcDir, p, nil, "get", apiserverPkg+"@"+KubernetesVersion); err != nil {
		return err
	}
	// Without the version variables the binary reports v0.0.0-master, which
	// kubectl and client-go's discovery cannot parse.
	minor := strings.SplitN(strings.TrimPrefix(KubernetesVersion, "v"), ".", 3)[1]
	ldflags := fmt.Sprintf("-s -w -X k8s.io/component-base/version.gitVersion=%s"+
		" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=%s"+
		" -X k8s.io/component-base/version.gitTreeState=clean", KubernetesVersion, minor)
	p.Printf("step 4/4: go build %s (cold: ~4 min on 2 cores)", apiserverPkg)
	return buildAtomic(ctx, srcDir, dst, apiserverPkg, ldflags, KubernetesVersion, p)
}

// buildEtcd builds etcd from go.etcd.io/etcd/server/v3, whose root package
// is etcd's main package.
func buildEtcd(ctx context.Context, srcDir, dst string, p *progressWriter) error {
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return fmt.Errorf("create wrapper module dir: %w", err)
	}
	gomod := fmt.Sprintf("// Generated by github.com/wirelace/wirelace/e2e/k8s; do not edit.\nmodule %s\n\ngo 1.21\n\nrequire %s %s\n",
		etcdWrapModule, etcdModule, EtcdVersion)
	p.Printf("etcd step 1/3: write wrapper module %s", filepath.Join(srcDir, "go.mod"))
	if err := os.WriteFile(filepath.Join(srcDir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return fmt.Errorf("write wrapper go.mod: %w", err)
	}
	p.Printf("etcd step 2/3: resolve dependencies of %s", etcdModule)
	if err := runGo(ctx, srcDir, p, nil, "get", etcdModule+"@"+EtcdVersion); err != nil {
		return err
	}
	p.Printf("etcd step 3/3: go build %s", etcdModule)
	return buildAtomic(ctx, srcDir, dst, etcdModule, "-s -w", strings.TrimPrefix(EtcdVersion, "v"), p)
}

// downloadGoMod returns the go.mod text of module@version, fetched through
// the module proxy like any other module.
func downloadGoMod(ctx context.Context, dir, modVersion string, p *progressWriter) ([]byte, error) {
	var out bytes.Buffer
	runErr := runGo(ctx, dir, p, &out, "mod", "download", "-json", modVersion)
	var info struct{ GoMod, Error string }
	if err := json.Unmarshal(out.Bytes(), &info); err != nil {
		if runErr != nil {
			return nil, runErr
		}
		return nil, fmt.Errorf("parse go mod download -json output %q: %w", out.String(), err)
	}
	if info.Error != "" {
		return nil, fmt.Errorf("go mod download %s: %s", modVersion, info.Error)
	}
	if runErr != nil {
		return nil, runErr
	}
	b, err := os.ReadFile(info.GoMod)
	if err != nil {
		return nil, fmt.Errorf("read go.mod of %s: %w", modVersion, err)
	}
	return b, nil
}

// buildAtomic builds pkg to a temporary name next to dst, checks that the
// result runs and reports wantVersion, and only then renames it to dst. An
// interrupted or broken build therefore never leaves a file at dst.
func buildAtomic(ctx context.Context, srcDir, dst, pkg, ldflags, wantVersion string, p *progressWriter) error {
	tmp := fmt.Sprintf("%s.tmp-%d", dst, os.Getpid())
	defer os.Remove(tmp) // no-op after a successful rename
	if err := runGo(ctx, srcDir, p, nil, "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", tmp, pkg); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, tmp, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("run %s --version: %w: %s", filepath.Base(dst), err, out)
	}
	if !strings.Contains(string(out), wantVersion) {
		return fmt.Errorf("%s --version printed %q, want it to mention %s", filepath.Base(dst), strings.TrimSpace(string(out)), wantVersion)
	}
	p.Printf("%s --version: %s", filepath.Base(dst), strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; "))
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file and renames it over path,
// so readers see either the old or the new content, never a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
