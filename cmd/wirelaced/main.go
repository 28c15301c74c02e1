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
	"github.com/wirelace/wirelace/daemon/device"
	"github.com/wirelace/wirelace/daemon/masq"
	"github.com/wirelace/wirelace/daemon/node"
	"github.com/wirelace/wirelace/daemon/routes"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "cleanup" {
		cleanup(os.Args[2:])
		return
	}
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

// cleanup removes what wirelaced leaves on a node on purpose (the persistent
// WireGuard link with its routes, the node-IP policy rule, the masquerading
// table), for uninstall. Keys and the IPAM database stay in the state dir;
// remove it by hand to forget the node's identity.
func cleanup(args []string) {
	def := config.Defaults()
	fs := flag.NewFlagSet("wirelaced cleanup", flag.ExitOnError)
	iface := fs.String("interface", def.Interface, "WireGuard interface to delete")
	table := fs.Int("route-table", def.RouteTable, "routing table of the node-IP routes")
	mark := fs.Int("fwmark", def.FwMark, "firewall mark of the node-IP policy rule")
	fs.Parse(args)
	failed := false
	for _, err := range []error{device.Delete(*iface), routes.DeleteRule(*table, *mark), masq.Delete()} {
		if err != nil {
			fmt.Fprintf(os.Stderr, "wirelaced cleanup: %v\n", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
	fmt.Printf("removed %s, the node-IP policy rule and the nftables table inet %s\n", *iface, masq.TableName)
}
