package labbuild

import (
	"context"
	"io"
	"path/filepath"
)

// Versions of the node software the lab runs for real Kubernetes nodes,
// built in the lab module with kubelet: Debian's containerd is a 1.x that
// kubelet 1.38 no longer supports, and nothing on the machine ships a
// kubelet. runc is the one piece taken from Debian (it needs cgo and
// libseccomp); see RequireRunc.
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
	containerdModule     = "github.com/containerd/containerd/v2"
	cniPluginsModule     = "github.com/containernetworking/plugins"
)

// EnsureNodeBinaries builds kubelet, kube-controller-manager,
// kube-scheduler, kubectl, containerd, its runc shim, ctr and the CNI
// loopback plugin with one go build into
// cacheDir/lab-<KubernetesVersion>/node/bin, or reuses them, as
// EnsureBinaries does.
func EnsureNodeBinaries(ctx context.Context, cacheDir string, progress io.Writer) (NodeBinaries, error) {
	p := newProgressWriter(progress, "[node-build] ")
	dir, err := ensureTargets(ctx, cacheDir, "node", nodeTargets(), p,
		"kubelet, kube-controller-manager, kube-scheduler, kubectl "+KubernetesVersion+", containerd "+ContainerdVersion+" and CNI loopback "+CNIPluginsVersion)
	if err != nil {
		return NodeBinaries{}, err
	}
	return NodeBinaries{
		Kubelet:           filepath.Join(dir, "kubelet"),
		ControllerManager: filepath.Join(dir, "kube-controller-manager"),
		Scheduler:         filepath.Join(dir, "kube-scheduler"),
		Kubectl:           filepath.Join(dir, "kubectl"),
		Containerd:        filepath.Join(dir, "containerd"),
		Shim:              filepath.Join(dir, "containerd-shim-runc-v2"),
		Ctr:               filepath.Join(dir, "ctr"),
		Loopback:          filepath.Join(dir, "loopback"),
	}, nil
}
