// Command wirelace-lab-build builds (or reuses) what the lab runs besides
// Wirelace into the repository's .cache/: kube-apiserver and etcd, then the
// software of real Kubernetes nodes (kubelet, the controllers, kubectl,
// containerd) and helm. `make k8s` and `make lab-bins` run it before any
// test or lab starts its clock. It imports only package labbuild, so that
// it compiles in seconds on a cold machine and the long builds start at
// once.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/wirelace/wirelace/e2e/labbuild"
)

func main() {
	root := flag.String("root", ".", "repository root (the binaries go to its .cache/)")
	cpOnly := flag.Bool("control-plane-only", false, "build only kube-apiserver and etcd (what demo and bench need)")
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := build(ctx, filepath.Join(*root, ".cache"), *cpOnly); err != nil {
		fmt.Fprintln(os.Stderr, "wirelace-lab-build:", err)
		os.Exit(1)
	}
}

func build(ctx context.Context, cache string, cpOnly bool) error {
	if _, err := labbuild.EnsureBinaries(ctx, cache, os.Stderr); err != nil || cpOnly {
		return err
	}
	// kubelet, containerd and the controllers for labs with real
	// Kubernetes nodes (lab.Options.Helm).
	if _, err := labbuild.EnsureNodeBinaries(ctx, cache, os.Stderr); err != nil {
		return err
	}
	// helm, to render and install the chart as users do.
	_, err := labbuild.EnsureHelm(ctx, cache, os.Stderr)
	return err
}
