// Command wirelace-install is the Wirelace DaemonSet's install step: it
// copies the CNI plugin binaries onto the node and writes Wirelace into the
// node's CNI configuration, standalone or chained after the primary CNI.
// By default it then keeps watching, as a sidecar, and puts Wirelace back
// when the primary rewrites its file, stopping (and saying so) rather than
// fighting an agent that keeps removing it. --once installs and exits (an
// init container); --uninstall undoes the install. See docs/installer.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/wirelace/wirelace/install/cniinstall"
	"github.com/wirelace/wirelace/internal/cli"
	"github.com/wirelace/wirelace/internal/kubeconfig"
	"github.com/wirelace/wirelace/netconf"
)

func main() {
	o, err := parseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "wirelace-install: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		// One line that says what to fix; the structured log has the rest.
		fmt.Fprintf(os.Stderr, "wirelace-install: %v\n", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	cfg            cniinstall.Config
	once           bool
	uninstall      bool
	removeBinaries bool
	nodeName       string
	kubeconfig     string
	logLevel       slog.Level
}

// parseFlags parses args into options and checks them, so that every
// mistake is one line naming the flag, before anything is touched.
func parseFlags(args []string, getenv func(string) string) (options, error) {
	o := options{}
	c := &o.cfg
	p := cniinstall.DefaultPolicy()
	fs := flag.NewFlagSet("wirelace-install", flag.ContinueOnError)
	mode := fs.String("mode", string(cniinstall.Standalone), "standalone: write Wirelace's own conflist; chained: append Wirelace to the primary CNI's conflist")
	fs.StringVar(&c.ConfDir, "conf-dir", cniinstall.DefaultConfDir, "CNI conf dir (the host's, mounted)")
	fs.StringVar(&c.BinDir, "bin-dir", cniinstall.DefaultBinDir, "CNI bin dir to install the plugin binaries into (the host's, mounted)")
	fs.StringVar(&c.BinSrcDir, "bin-src-dir", cniinstall.DefaultBinSrcDir, "dir in the image holding the plugin binaries")
	binaries := fs.String("binaries", strings.Join(cniinstall.DefaultBinaries(), ","), "comma-separated binaries to copy from --bin-src-dir to --bin-dir; empty copies none")
	fs.StringVar(&c.ConfName, "conf-name", cniinstall.DefaultConfName, "standalone: file name of Wirelace's conflist in --conf-dir")
	fs.StringVar(&c.NetworkName, "network-name", cniinstall.DefaultNetworkName, "standalone: CNI network name")
	fs.StringVar(&c.PrimaryConf, "primary-conf", "", "chained: file name of the primary CNI's config in --conf-dir; empty picks the one runtimes load (the first .conf, .conflist or .json by name)")
	fs.StringVar(&c.Socket, "socket", netconf.DefaultSocket, "wirelaced's local API socket, written into the CNI config")
	fs.StringVar(&c.StateDir, "state-dir", "", "where the original files are backed up for --uninstall (default <conf-dir>/"+cniinstall.StateDirName+")")
	fs.StringVar(&c.StatusFile, "status-file", cniinstall.DefaultStatusFile, "status file for wirelaced to read; empty writes none")
	fs.StringVar(&o.nodeName, "node-name", getenv("NODE_NAME"), "this node's name, for Events on its Node (default $NODE_NAME)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for Events; empty means in-cluster credentials (with neither, no Events)")
	fs.BoolVar(&o.once, "once", false, "install and exit (an init container) instead of watching until SIGTERM")
	fs.BoolVar(&o.uninstall, "uninstall", false, "remove Wirelace from the CNI configuration, restoring the original files, and exit")
	fs.BoolVar(&o.removeBinaries, "remove-binaries", false, "with --uninstall: remove the installed binaries too")
	fs.DurationVar(&c.PollInterval, "poll-interval", cniinstall.DefaultPoll, "how often to look at the conf dir")
	fs.IntVar(&p.MaxReinserts, "max-reinserts", p.MaxReinserts, "re-inserts allowed within --reinsert-window; one more is a conflict and the installer stops writing")
	fs.DurationVar(&p.Window, "reinsert-window", p.Window, "window of --max-reinserts")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := cli.Parse(fs, args, "wirelace-install", "wirelace-install installs the Wirelace CNI plugin on this node."); err != nil {
		return o, err
	}
	var err error
	if o.logLevel, err = cli.LogLevel(*logLevel); err != nil {
		return o, err
	}
	c.Mode = cniinstall.Mode(*mode)
	if c.Mode != cniinstall.Standalone && c.Mode != cniinstall.Chained {
		return o, fmt.Errorf("--mode %q: want standalone or chained", *mode)
	}
	if c.PrimaryConf != "" && (c.Mode != cniinstall.Chained || filepath.Base(c.PrimaryConf) != c.PrimaryConf) {
		return o, fmt.Errorf("--primary-conf %q: a file name in --conf-dir, with --mode=chained", c.PrimaryConf)
	}
	if !strings.HasSuffix(c.ConfName, ".conflist") || filepath.Base(c.ConfName) != c.ConfName {
		return o, fmt.Errorf("--conf-name %q: want a file name ending in .conflist", c.ConfName)
	}
	if !filepath.IsAbs(c.Socket) {
		return o, fmt.Errorf("--socket %q must be an absolute path", c.Socket)
	}
	if *binaries != "" {
		for _, b := range strings.Split(*binaries, ",") {
			if b = strings.TrimSpace(b); b == "" || filepath.Base(b) != b {
				return o, fmt.Errorf("--binaries: %q is not a file name", b)
			}
			c.Binaries = append(c.Binaries, b)
		}
	}
	if o.once && o.uninstall {
		return o, errors.New("--once and --uninstall exclude each other")
	}
	if o.removeBinaries && !o.uninstall {
		return o, errors.New("--remove-binaries goes with --uninstall")
	}
	if c.PollInterval <= 0 || c.PollInterval > time.Minute {
		return o, fmt.Errorf("--poll-interval %v: want more than 0 and at most 1m", c.PollInterval)
	}
	if p.MaxReinserts < 1 || p.Window <= 0 {
		return o, errors.New("--max-reinserts must be at least 1 and --reinsert-window positive")
	}
	c.Policy = p
	return o, nil
}

// run installs, watches or uninstalls as o says, until ctx ends.
func run(ctx context.Context, o options, log *slog.Logger) error {
	cfg := o.cfg
	cfg.Log = log
	if !o.once && !o.uninstall {
		events, err := eventRecorder(o, log)
		if err != nil {
			return err
		}
		cfg.Events = events
	}
	in, err := cniinstall.New(cfg)
	if err != nil {
		return err
	}
	switch {
	case o.uninstall:
		return in.Uninstall(ctx, o.removeBinaries)
	case o.once:
		return in.Install(ctx)
	default:
		log.Info("wirelace-install watching", "mode", cfg.Mode, "conf_dir", cfg.ConfDir, "status_file", cfg.StatusFile)
		return in.Run(ctx)
	}
}

// eventRecorder records Events on this node's Node through the API server,
// or is nil (with a log line) when there is no node name or no in-cluster
// credentials. A --kubeconfig that does not load is an error: it was asked
// for.
func eventRecorder(o options, log *slog.Logger) (cniinstall.EventRecorder, error) {
	if o.nodeName == "" {
		log.Info("no --node-name or $NODE_NAME: a conflict will not be recorded as a Kubernetes Event")
		return nil, nil
	}
	cfg, err := kubeconfig.Load(o.kubeconfig, "wirelace-install")
	switch {
	case errors.Is(err, kubeconfig.ErrNotInCluster):
		log.Info("no --kubeconfig and not in a cluster: a conflict will not be recorded as a Kubernetes Event", "err", err)
		return nil, nil
	case err != nil:
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cniinstall.NodeEvents{Client: client, Node: o.nodeName}, nil
}
