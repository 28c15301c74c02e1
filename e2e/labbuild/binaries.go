package labbuild

import (
	"context"
	"io"
	"path/filepath"
)

// KubernetesVersion is the control plane and the nodes the lab runs. Like
// everything the lab runs besides Wirelace it is built from source through
// the Go module proxy (see labmodule.go), because the lab machine has
// neither Docker nor a package that ships it.
const KubernetesVersion = "v1.37.2"

// Binaries are absolute paths of built control-plane executables.
type Binaries struct{ APIServer, Etcd string }

const apiserverPkg = "k8s.io/kubernetes/cmd/kube-apiserver"

// EnsureBinaries builds kube-apiserver and etcd into
// cacheDir/lab-<KubernetesVersion>/control-plane/bin, or reuses them when
// the stamp file there records this recipe and both binaries exist. It needs
// only the go command and the module proxy, so it works on a machine with an
// empty module cache. Progress (each step, `go build -v` package lines and a
// heartbeat during long steps) is written to progress, which may be nil.
func EnsureBinaries(ctx context.Context, cacheDir string, progress io.Writer) (Binaries, error) {
	p := newProgressWriter(progress, "[k8s-build] ")
	dir, err := ensureTargets(ctx, cacheDir, "control-plane", controlPlaneTargets(), p,
		"kube-apiserver "+KubernetesVersion+" and etcd "+EtcdVersion)
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{APIServer: filepath.Join(dir, "kube-apiserver"), Etcd: filepath.Join(dir, "etcd")}, nil
}
