// Package kubeconfig finds the Kubernetes API credentials of a Wirelace
// binary: the file given by its --kubeconfig flag, or the pod's in-cluster
// service account when the flag is empty.
package kubeconfig

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNotInCluster is wrapped by Load's error when no path was given and the
// process does not run in a pod with a service account. A binary for which
// the API is optional (the installer's Events) tells it apart from a
// kubeconfig that was asked for and does not load.
var ErrNotInCluster = errors.New("no --kubeconfig given and not running in a cluster")

// Load returns the REST config of the kubeconfig file at path, or of the
// in-cluster credentials when path is empty, with its user agent set to
// userAgent (the binary's name, so that the API server's audit log and
// metrics say who asked).
func Load(path, userAgent string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotInCluster, err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", path); err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	cfg.UserAgent = userAgent
	return cfg, nil
}
