package labbuild

import (
	"context"
	"io"
	"path/filepath"
)

// HelmVersion is the helm the tests render install/helm/wirelace with. It is
// built in the lab module like kube-apiserver, and kept out of the
// repository's go.mod: helm's dependency graph is large and only the tests
// need the binary, never the code.
const HelmVersion = "v3.22.0"

const (
	helmModule = "helm.sh/helm/v3"
	helmPkg    = helmModule + "/cmd/helm"
)

// EnsureHelm builds helm into cacheDir/lab-<KubernetesVersion>/helm/bin, or
// reuses it, as EnsureBinaries does.
func EnsureHelm(ctx context.Context, cacheDir string, progress io.Writer) (string, error) {
	p := newProgressWriter(progress, "[helm-build] ")
	dir, err := ensureTargets(ctx, cacheDir, "helm", helmTargets(), p, "helm "+HelmVersion)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "helm"), nil
}
