// Package kube is wirelaced's side of the Kubernetes API: connecting,
// claiming addresses, publishing the node's MeshNode and Lease, and watching
// the other nodes. The API server is the only coordination store; nothing
// here polls it.
package kube

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/wirelace/wirelace/internal/kubeconfig"
)

// Clients are the API clients the daemon uses.
type Clients struct {
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
	Host    string
	// Requests counts what both clients send (nil for clients made
	// elsewhere, e.g. in tests).
	Requests *Requests
}

// connectTimeout bounds the start-up reachability check, so a daemon pointed
// at the wrong server fails fast with a clear error instead of hanging.
const connectTimeout = 10 * time.Second

// Connect builds clients from the kubeconfig at path (or in-cluster
// credentials when path is empty) and checks that the server answers.
func Connect(ctx context.Context, path string) (Clients, error) {
	cfg, err := kubeconfig.Load(path, "wirelaced")
	if err != nil {
		return Clients{}, err
	}
	// The daemon makes few, small requests; watches are long-lived and do
	// not count against these limits.
	cfg.QPS, cfg.Burst = 20, 40
	return NewClients(ctx, cfg)
}

// NewClients builds clients from a REST config and checks the server answers.
func NewClients(ctx context.Context, cfg *rest.Config) (Clients, error) {
	requests := newRequests()
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(requests.wrap)
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Clients{}, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return Clients{}, fmt.Errorf("dynamic client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if _, err := core.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw(); err != nil {
		return Clients{}, fmt.Errorf("cannot reach the Kubernetes API at %s (check --kubeconfig and that the server is up): %w", cfg.Host, err)
	}
	return Clients{Core: core, Dynamic: dyn, Host: cfg.Host, Requests: requests}, nil
}
