package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/wirelace/wirelace/e2e/image"
	"github.com/wirelace/wirelace/e2e/labbuild"
)

// A lab made with Options.Helm gets Wirelace the way users do: the
// Dockerfile's image, imported into every node's containerd (there is no
// registry), and `helm install` of install/helm/wirelace, run by the real
// helm binary against the lab's API server. The chart's values differ from
// its defaults only where the lab differs from a cloud: the image is
// local, the API server is not behind a kube-proxy Service, the relays are
// the lab's processes, and the CNI dirs are per node (HostCNIConfDir).

// ChartRelease is the Helm release name the lab installs.
const ChartRelease = "wirelace"

// WirelaceImage builds the Wirelace image as the Dockerfile describes it,
// from static builds of its binaries (bin/ may hold race builds, which
// need libc), and imports it into every kubelet node under each tag given.
// Nodes added later do not get it.
func (l *Lab) WirelaceImage(ctx context.Context, tags ...string) error {
	spec, err := image.LoadSpec(filepath.Join(l.opts.Root, "Dockerfile"))
	if err != nil {
		return err
	}
	binDir := filepath.Join(l.Dir, "images", "wirelace-bin")
	if err := l.buildStatic(ctx, binDir, spec); err != nil {
		return err
	}
	img, err := image.Build(binDir, spec)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		ref := image.Repository + ":" + tag
		tarball := filepath.Join(l.Dir, "images", "wirelace-"+tag+".tar")
		if err := image.WriteTarball(tarball, ref, img); err != nil {
			return err
		}
		for _, n := range l.Nodes() {
			if n.Kubelet == nil {
				continue
			}
			if err := n.importImages(ctx, []labImage{{ref: ref, path: tarball}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// buildStatic builds each binary the image holds, as the Dockerfile's
// build stage does (static, -trimpath, stripped), into dir.
func (l *Lab) buildStatic(ctx context.Context, dir string, spec image.Spec) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", dir + "/"}
	for _, f := range spec.Files {
		pkg, err := l.mainPackage(f.Name)
		if err != nil {
			return err
		}
		args = append(args, pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = l.opts.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// mainPackage finds the main package a binary of the image is built from:
// the commands under cmd/, the CNI plugins under plugins/.
func (l *Lab) mainPackage(binary string) (string, error) {
	for _, dir := range []string{"cmd", "plugins"} {
		if _, err := os.Stat(filepath.Join(l.opts.Root, dir, binary, "main.go")); err == nil {
			return "./" + filepath.ToSlash(filepath.Join(dir, binary)), nil
		}
	}
	return "", fmt.Errorf("no main package for the image's %s under cmd/ or plugins/", binary)
}

// ChartValues are the values the lab installs the chart with: the image
// (tag), where nodes reach the API server, the lab's relays and STUN
// servers, the per-node CNI dirs, and mode "standalone" or "chained".
// Callers may change the map before installing with it.
func (l *Lab) ChartValues(tag, mode string) map[string]any {
	u, _ := url.Parse(l.CP.URL())
	var relays, stun []string
	for _, r := range l.Relays() {
		relays = append(relays, r.Addr())
		stun = append(stun, r.STUN().String())
	}
	return map[string]any{
		"image": map[string]any{"repository": image.Repository, "tag": tag, "pullPolicy": "Never"},
		// No kube-proxy in the lab: the API server's own address.
		"k8sServiceHost": u.Hostname(),
		"k8sServicePort": u.Port(),
		"cni": map[string]any{
			"mode":    mode,
			"confDir": l.HostCNIConfDir(),
			"binDir":  l.HostCNIBinDir(),
		},
		"daemon": map[string]any{
			"relays":                relays,
			"stunServers":           stun,
			"nodeIPRoutes":          true,
			"advertiseGrantedCIDRs": true,
			"logLevel":              "debug",
		},
		// The lab's relays are processes on its internet; the chart's
		// StatefulSet needs LoadBalancer Services.
		"relay":   map[string]any{"enabled": false},
		"cleanup": map[string]any{"pauseImage": PauseImage},
	}
}

// Helm runs the helm binary (built into the cache like kube-apiserver)
// with an admin kubeconfig, inside the internet namespace where the API
// server is, and returns its combined output.
func (l *Lab) Helm(ctx context.Context, args ...string) (string, error) {
	helm, err := labbuild.EnsureHelm(ctx, l.opts.CacheDir, l.log)
	if err != nil {
		return "", err
	}
	return l.asAdmin(ctx, "helm", helm, []string{"HELM_CACHE_HOME=" + filepath.Join(l.Dir, "helm", "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(l.Dir, "helm", "config"), "HELM_DATA_HOME=" + filepath.Join(l.Dir, "helm", "data")}, args)
}

// HelmInstall installs (verb "install") or upgrades (verb "upgrade") the
// chart in the repository as release ChartRelease in Namespace with values,
// and waits for its workloads to be ready.
func (l *Lab) HelmInstall(ctx context.Context, verb string, values map[string]any) (string, error) {
	b, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		return "", err
	}
	file := filepath.Join(l.Dir, "helm-values-"+verb+".json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return "", err
	}
	args := []string{verb, ChartRelease, filepath.Join(l.opts.Root, "install", "helm", "wirelace"),
		"--namespace", Namespace, "--values", file, "--wait", "--timeout", "4m"}
	if verb == "install" {
		args = append(args, "--create-namespace")
	}
	return l.Helm(ctx, args...)
}

// Kubectl runs kubectl as the cluster's admin, from the API server's
// namespace like Helm, and returns its combined output.
func (l *Lab) Kubectl(ctx context.Context, args ...string) (string, error) {
	if l.nodeBins.Kubectl == "" {
		return "", fmt.Errorf("kubectl is built for labs with Options.Helm")
	}
	return l.asAdmin(ctx, "kubectl", l.nodeBins.Kubectl, nil, args)
}

// asAdmin runs a Kubernetes client binary with the admin kubeconfig (and
// env added to this process's), inside the internet namespace where the API
// server is, and returns its combined output.
func (l *Lab) asAdmin(ctx context.Context, name, bin string, env, args []string) (string, error) {
	kubeconfig, err := l.adminKubeconfig()
	if err != nil {
		return "", err
	}
	argv := append([]string{"ip", "netns", "exec", l.internet, bin, "--kubeconfig", kubeconfig}, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// adminKubeconfig writes (once) a kubeconfig of the cluster's admin, for
// tools run inside the internet namespace.
func (l *Lab) adminKubeconfig() (string, error) {
	kubeconfig := filepath.Join(l.Dir, "admin.kubeconfig")
	if _, err := os.Stat(kubeconfig); err == nil {
		return kubeconfig, nil
	}
	return kubeconfig, l.CP.WriteKubeconfig(kubeconfig, l.CP.AdminToken())
}
