// Command wirelace-lab runs the Wirelace lab by hand: `wirelace-lab demo`
// builds a small cluster of network-namespace nodes around a real
// kube-apiserver, runs the real wirelaced on each, shows the mesh and each
// pair's reachability, and removes everything again (also on Ctrl-C).
// `wirelace-lab prepare` builds (or reuses) the lab's kube-apiserver, etcd
// and the software of real nodes (kubelet, containerd, the controllers) in
// the cache, so that a first test run does not spend its time
// limits on a cold build.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/wirelace/wirelace/e2e/k8s"
)

// verbs are what wirelace-lab does: the demo, the whole bench or one of
// its parts, redrawing the report, building the lab's binaries.
var verbs = []string{"demo", "bench", "throughput", "failover", "first-packet", "cni", "scale", "report", "prepare"}

func main() {
	fs := flag.NewFlagSet("wirelace-lab", flag.ExitOnError)
	root := fs.String("root", ".", "repository root (bin/ and install/ are read from it)")
	keep := fs.Bool("keep-logs", false, "keep .lab/<prefix> (logs, node state) after the run")
	wgGo := fs.String("wireguard-go", "", "stock wireguard-go binary to compare with (bench)")
	cpOnly := fs.Bool("control-plane-only", false, "prepare: build only kube-apiserver and etcd (what demo and bench need)")
	steady := fs.Duration("steady", 10*time.Minute, "failover, bench: how long to watch the steady state before the cut")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wirelace-lab [flags] %s [flags]\n\nFlags:\n", strings.Join(verbs, "|"))
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])
	verb := fs.Arg(0)
	fs.Parse(fs.Args()[min(1, fs.NArg()):]) // flags may also follow the verb
	if fs.NArg() != 0 || !slices.Contains(verbs, verb) || ((verb == "bench" || verb == "throughput") && *wgGo == "") {
		fs.Usage()
		os.Exit(2)
	}
	if verb != "prepare" && os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "wirelace-lab: the lab needs root (it creates network namespaces)")
		os.Exit(1)
	}
	abs, err := filepath.Abs(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wirelace-lab:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The demo: the mesh and pods through libcni, then a real cluster.
	run := func() error {
		if err := demo(ctx, abs, *keep); err != nil {
			return err
		}
		return demoCluster(ctx, abs, *keep)
	}
	switch verb {
	case "bench":
		// The data plane, then the control plane at scale.
		run = func() error {
			if err := bench(ctx, abs, *wgGo); err != nil {
				return err
			}
			if err := benchFailover(ctx, abs, *steady, *keep); err != nil {
				return err
			}
			if err := benchFirstPacket(ctx, abs); err != nil {
				return err
			}
			if err := benchCNI(ctx, abs); err != nil {
				return err
			}
			if err := benchScale(ctx, abs); err != nil {
				return err
			}
			return writeReport(abs)
		}
	case "throughput":
		run = func() error { return bench(ctx, abs, *wgGo) }
	case "cni":
		run = func() error { return benchCNI(ctx, abs) }
	case "failover":
		run = func() error { return benchFailover(ctx, abs, *steady, *keep) }
	case "report":
		run = func() error { return writeReport(abs) }
	case "scale":
		run = func() error { return benchScale(ctx, abs) }
	case "first-packet":
		run = func() error { return benchFirstPacket(ctx, abs) }
	case "prepare":
		run = func() error {
			cache := filepath.Join(abs, ".cache")
			if _, err := k8s.EnsureBinaries(ctx, cache, os.Stderr); err != nil || *cpOnly {
				return err
			}
			// kubelet, containerd and the controllers for labs with real
			// Kubernetes nodes (lab.Options.Helm).
			if _, err := k8s.EnsureNodeBinaries(ctx, cache, os.Stderr); err != nil {
				return err
			}
			// helm, to render and install the chart as users do.
			_, err := k8s.EnsureHelm(ctx, cache, os.Stderr)
			return err
		}
	}
	if err := run(); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "wirelace-lab: interrupted; lab removed")
		} else {
			fmt.Fprintln(os.Stderr, "wirelace-lab:", err)
		}
		os.Exit(1)
	}
}
