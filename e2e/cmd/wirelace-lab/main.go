// Command wirelace-lab runs the Wirelace lab by hand: `wirelace-lab demo`
// builds a small cluster of network-namespace nodes around a real
// kube-apiserver, runs the real wirelaced on each, shows the mesh and each
// pair's reachability, and removes everything again (also on Ctrl-C).
// The bench verbs measure it. What the lab runs besides Wirelace is built by
// wirelace-lab-build.
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
)

// verbs are what wirelace-lab does: the demo, the whole bench or one of
// its parts, redrawing the report.
var verbs = []string{"demo", "bench", "throughput", "failover", "first-packet", "join", "cni", "scale", "report"}

func main() {
	fs := flag.NewFlagSet("wirelace-lab", flag.ExitOnError)
	root := fs.String("root", ".", "repository root (bin/ and install/ are read from it)")
	keep := fs.Bool("keep-logs", false, "keep .lab/<prefix> (logs, node state) after the run")
	wgGo := fs.String("wireguard-go", "", "stock wireguard-go binary to compare with (bench)")
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
	if os.Geteuid() != 0 {
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
			if err := benchJoin(ctx, abs); err != nil {
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
	case "join":
		run = func() error { return benchJoin(ctx, abs) }
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
