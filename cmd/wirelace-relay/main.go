// Command wirelace-relay relays WireGuard packets between Wirelace mesh
// nodes that cannot reach each other directly (TCP, optionally TLS), and
// answers STUN so nodes can learn their public addresses and NAT behaviour
// (UDP). It serves only nodes with a MeshNode and a Node in the cluster,
// which it watches through the Kubernetes API.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"

	"github.com/wirelace/wirelace/internal/kubeconfig"
	"github.com/wirelace/wirelace/relay/membership"
	"github.com/wirelace/wirelace/relay/server"
	"github.com/wirelace/wirelace/relay/stunserver"
)

// Timeouts of the metrics HTTP server and of shutdown.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpShutdownTimeout   = 5 * time.Second
)

func main() {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "wirelace-relay: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: opts.logLevel}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, log, connectKube); err != nil {
		// One line that says what to fix; the structured log has the rest.
		fmt.Fprintf(os.Stderr, "wirelace-relay: %v\n", err)
		os.Exit(1)
	}
}

// membersFunc builds the relay's membership source; tests replace the
// Kubernetes one.
type membersFunc func(ctx context.Context, kubeconfig string, log *slog.Logger) (server.Members, func(), error)

// run opens every socket first, so a port in use fails at once with a clear
// error; then syncs membership; then serves until ctx ends.
func run(ctx context.Context, o options, log *slog.Logger, newMembers membersFunc) error {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return listenError("--listen", o.listen, err)
	}
	defer ln.Close()
	if o.tlsCert != "" {
		certs, err := newCertReloader(o.tlsCert, o.tlsKey, log)
		if err != nil {
			return err
		}
		// Both ends are Wirelace: nothing older than TLS 1.3 to support.
		ln = tls.NewListener(ln, &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS13})
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var stun *stunserver.Server
	if o.stunListen != "" {
		stun, err = stunserver.Listen(stunserver.Config{Listen: o.stunListen, AltListen: o.stunAltListen, Logger: log, Registry: reg})
		if err != nil {
			return err // names the STUN address at fault
		}
		defer stun.Close()
	}

	var ready atomic.Bool
	var metricsLn net.Listener
	if o.metricsListen != "" {
		if metricsLn, err = net.Listen("tcp", o.metricsListen); err != nil {
			return listenError("--metrics-listen", o.metricsListen, err)
		}
		defer metricsLn.Close()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	// stopAll ends whatever is running and waits for it; err is why.
	stopAll := func(err error) error {
		cancel()
		return errors.Join(err, g.Wait())
	}
	if metricsLn != nil {
		// Up before the membership sync, so liveness probes pass while a
		// large cluster lists; readiness waits for the sync.
		g.Go(func() error { return serveHTTP(ctx, metricsLn, reg, &ready) })
	}

	members, shutdownMembers, err := newMembers(ctx, o.kubeconfig, log)
	if err != nil {
		if ctx.Err() != nil {
			return stopAll(nil) // interrupted during start-up: not an error
		}
		return stopAll(err)
	}
	defer func() {
		cancel() // the informer stops with ctx; Shutdown waits for it
		shutdownMembers()
	}()

	srv, err := server.New(server.Config{
		Members:            members,
		Logger:             log,
		Registry:           reg,
		Rate:               o.rate,
		Burst:              o.burst,
		QueueDepth:         o.queue,
		QueueBytes:         o.queueBytes,
		IdleTimeout:        o.idleTimeout,
		MaxSessions:        o.maxSessions,
		MaxHandshakes:      o.maxHandshakes,
		MaxHandshakesPerIP: o.maxHandshakesPerIP,
		RefusalLogInterval: o.refusalLogInterval,
	})
	if err != nil {
		return stopAll(err)
	}
	g.Go(func() error { return srv.Serve(ctx, ln) })
	if stun != nil {
		g.Go(func() error { return stun.Serve(ctx) })
	}
	ready.Store(true)
	log.Info("wirelace-relay ready", "listen", ln.Addr().String(), "tls", o.tlsCert != "",
		"stun", o.stunListen, "stun_alt", o.stunAltListen, "metrics", o.metricsListen)
	err = g.Wait()
	log.Info("wirelace-relay stopped")
	return err
}

// listenError turns "listen tcp :8443: bind: address already in use" into
// "--listen :8443: address already in use".
func listenError(flagName, addr string, err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return fmt.Errorf("%s %s: %w", flagName, addr, se.Err)
	}
	return fmt.Errorf("%s %s: %w", flagName, addr, err)
}

func serveHTTP(ctx context.Context, ln net.Listener, reg *prometheus.Registry, ready *atomic.Bool) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "mesh membership not synced yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: httpReadHeaderTimeout}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		defer cancel()
		hs.Shutdown(sctx)
	})
	defer stop()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// connectKube builds the membership from the cluster's MeshNodes and Nodes.
func connectKube(ctx context.Context, path string, log *slog.Logger) (server.Members, func(), error) {
	cfg, err := kubeconfig.Load(path, "wirelace-relay")
	if err != nil {
		return nil, nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("dynamic client: %w", err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("metadata client: %w", err)
	}
	members, err := membership.NewKube(dyn, meta, log)
	if err != nil {
		return nil, nil, err
	}
	if err := members.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("cannot watch MeshNodes and Nodes at %s: %w", cfg.Host, err)
	}
	return members, members.Shutdown, nil
}
