// Command wirelaced is the Wirelace node daemon: it runs the node's
// WireGuard device, joins the mesh through the Kubernetes API and serves
// the CNI plugins and wirelacectl over a local socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/wirelace/wirelace/daemon/config"
	"github.com/wirelace/wirelace/daemon/node"
)

func main() {
	cfg, err := config.Parse(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "wirelaced: %v\n", err)
		os.Exit(2)
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := node.Run(ctx, cfg, log); err != nil {
		// One line that says what to fix; the structured log has the rest.
		fmt.Fprintf(os.Stderr, "wirelaced: %v\n", err)
		os.Exit(1)
	}
}
