// Package node is wirelaced itself: it wires keys, the WireGuard device, the
// Kubernetes API and the local API together and runs the reconcile loop
// that keeps the device's peers and routes equal to the mesh.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/api"
	"github.com/wirelace/wirelace/daemon/bind"
	"github.com/wirelace/wirelace/daemon/config"
	"github.com/wirelace/wirelace/daemon/device"
	"github.com/wirelace/wirelace/daemon/keys"
	"github.com/wirelace/wirelace/daemon/kube"
	"github.com/wirelace/wirelace/daemon/masq"
	"github.com/wirelace/wirelace/daemon/nat"
	"github.com/wirelace/wirelace/ipam"
)

// Timing of the daemon's loops.
const (
	// nodeWaitTimeout is how long start-up waits for the kubelet to register
	// this node's Node object before giving up.
	nodeWaitTimeout = 60 * time.Second
	// localResync re-checks the device, routes and this node's own published
	// state even when the API is quiet, to repair local changes made behind
	// the daemon's back (a deleted route, a new host address). It reads only
	// local state and the informer cache: it does not poll the API.
	localResync = 30 * time.Second
	// retryMin and retryMax bound the backoff after a failed reconcile.
	retryMin = 500 * time.Millisecond
	retryMax = 30 * time.Second
	// shutdownTimeout bounds a graceful stop.
	shutdownTimeout = 5 * time.Second
	// apiCallTimeout bounds each write to the API (Lease, MeshNode): a
	// server that stopped answering must not hang the loop that would
	// notice it. Watches are long-lived and not bounded by it.
	apiCallTimeout = 10 * time.Second
	// apiFailuresNotReady is how many Lease renewals in a row may fail
	// before the node says it is not ready: one is a blip, three (30 s at
	// the default interval) is an API this node cannot reach, and its view
	// of the mesh is getting stale. The data plane is left as it is.
	apiFailuresNotReady = 3
)

// Daemon is one running wirelaced.
type Daemon struct {
	cfg     config.Config
	log     *slog.Logger
	keys    keys.Keys
	clients kube.Clients
	node    *corev1.Node // guarded by mu once the loops run (currentNode)
	dev     *device.Device
	bind    *bind.Bind
	watcher *kube.Watcher
	// ciliumNodes says whether Cilium's CiliumNode resource is served; its
	// pod CIDRs then count as the nodes' own.
	ciliumNodes bool
	// infra are the API server's, relays' and STUN servers' addresses,
	// which no peer may have routed to it.
	infra   []netip.Prefix
	mtu     int
	meshIPs []netip.Addr

	// Paths and NAT traversal.
	paths   *paths
	relays  *relaySet
	nat     nat.Result
	metrics *metrics

	// Pod networking.
	ipam     *ipam.Store
	podCIDRs []netip.Prefix
	stale    *staleTracker
	masq     masq.Masq

	kick    chan struct{}
	podKick chan struct{}

	mu     sync.Mutex
	ready  bool
	reason string
	// apiDown says why the API is unreachable (heartbeat), "" while it is
	// reachable.
	apiDown string
	// peerNames maps public keys to node names for status output.
	peerNames map[string]string
	endpoints []string
}

// Run starts the daemon and blocks until ctx is cancelled (graceful stop) or
// start-up fails. Start-up errors are returned as one line that says what
// to fix.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	d := &Daemon{
		cfg:       cfg,
		log:       log,
		kick:      make(chan struct{}, 1),
		podKick:   make(chan struct{}, 1),
		stale:     newStaleTracker(cfg.IPAMReleaseGrace.Duration),
		reason:    "starting",
		peerNames: map[string]string{},
	}
	pools, err := cfg.MeshPools()
	if err != nil {
		return err
	}
	if d.keys, err = keys.LoadOrCreate(cfg.StateDir); err != nil {
		return err
	}
	if err := checkPortFree(cfg.ListenPort); err != nil {
		return err
	}
	// The IPAM store opens before the API serves, so pod address calls never
	// see it missing; until the pod CIDRs are known they are answered with
	// "not ready" (the plugins' "try again later").
	if d.ipam, err = ipam.Open(filepath.Join(cfg.StateDir, "ipam.db")); err != nil {
		return err
	}
	defer d.ipam.Close()
	for _, r := range d.ipam.Repairs() {
		log.Warn("repaired the IPAM index", "detail", r)
	}

	// The local API comes up first so that plugins and operators get a
	// "not ready, because ..." answer during the rest of start-up.
	srv, err := api.Listen(cfg.Socket, d, log)
	if err != nil {
		return err
	}
	go func() {
		if err := srv.Serve(); err != nil {
			log.Error("local API stopped", "err", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		srv.Shutdown(sctx)
	}()

	d.metrics = newMetrics(d)
	if cfg.MetricsListen != "" {
		if err := d.metrics.serve(ctx, cfg.MetricsListen, log); err != nil {
			return fmt.Errorf("serve metrics on %s (set --metrics-listen, or empty to disable): %w", cfg.MetricsListen, err)
		}
	}

	d.setNotReady("connecting to the Kubernetes API")
	if d.clients, err = kube.Connect(ctx, cfg.Kubeconfig); err != nil {
		return err
	}
	d.setNotReady("waiting for Node " + cfg.NodeName)
	if d.node, err = waitForNode(ctx, d.clients, cfg.NodeName, log); err != nil {
		return err
	}

	if d.ciliumNodes, err = kube.CiliumNodesServed(d.clients); err != nil {
		return err
	}
	if d.infra, err = d.infrastructure(ctx); err != nil {
		return err
	}

	d.setNotReady("claiming mesh IPs")
	var meshIPs []netip.Addr
	for _, pool := range pools {
		p, err := kube.Claim(ctx, d.clients, d.node, pool, pool.Addr().BitLen(), v1alpha1.PurposeMeshIP, log)
		if err != nil {
			return fmt.Errorf("claim mesh IP in %s: %w", pool, err)
		}
		meshIPs = append(meshIPs, p.Addr())
	}

	d.setNotReady("setting up pod networking")
	if d.podCIDRs, err = d.findPodCIDRs(ctx, d.node); err != nil {
		return err
	}
	if err := d.ipam.SetRanges(d.podCIDRs); err != nil {
		return fmt.Errorf("set pod CIDRs %v: %w", d.podCIDRs, err)
	}
	if err := enableForwarding(append(slices.Clone(pools), d.podCIDRs...)); err != nil {
		return err
	}

	d.setNotReady("opening the WireGuard device")
	mtu := meshMTU(cfg.MTU, cfg.Interface)
	b := bind.New(log)
	paths := newPaths(b, d.keys.Control, d.metrics, log)
	var relays *relaySet
	if len(cfg.Relays) > 0 {
		relays, err = newRelaySet(cfg.Relays, cfg.RelayCA, cfg.FwMark, d.keys.WireGuard.PublicKey(), d.keys.Control, paths.handleRelayed, log)
		if err != nil {
			return err
		}
		paths.relays = relays
		b.SetRelay(relays)
	}
	b.SetHandler(paths.handle)
	// The local API's Status reads these while start-up goes on.
	d.mu.Lock()
	d.bind, d.paths, d.relays = b, paths, relays
	d.mu.Unlock()
	dev, err := device.Open(device.Config{
		Name:           cfg.Interface,
		MTU:            mtu,
		ListenPort:     cfg.ListenPort,
		FwMark:         cfg.FwMark,
		PrivateKey:     d.keys.WireGuard,
		Logger:         log,
		FixedEndpoints: true,
	}, d.bind)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("UDP port %d is in use by another process: stop it or set --listen-port", cfg.ListenPort)
		}
		return err
	}
	d.mu.Lock()
	d.dev, d.mtu, d.meshIPs = dev, mtu, meshIPs
	d.mu.Unlock()
	// Direct paths are confirmed by WireGuard's own authenticated receive
	// counters (or pongs), never by raw packets anyone could spoof.
	d.paths.setDevice(dev)
	// Close stops wireguard-go but keeps the persistent link and its routes,
	// so pods and peers keep their configuration across a restart.
	defer d.dev.Close()

	d.watcher, err = kube.NewWatcher(d.clients, cfg.NodeName, d.ciliumNodes, d.trigger, func() { kickChan(d.podKick) })
	if err != nil {
		return err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer func() {
		stopWatch()
		d.watcher.Shutdown()
	}()
	if err := d.watcher.Start(wctx, log); err != nil {
		return err
	}
	go d.heartbeat(ctx)
	go d.ipamLoop(ctx)
	if d.relays != nil {
		d.relays.run(ctx)
	}
	go d.paths.run(ctx)
	go d.natLoop(ctx)

	log.Info("wirelaced started", "node", cfg.NodeName, "mesh_ips", d.meshIPs, "pod_cidrs", d.podCIDRs,
		"public_key", d.keys.WireGuard.PublicKey().String(), "listen_port", cfg.ListenPort, "mtu", d.mtu)
	d.loop(ctx)
	log.Info("wirelaced stopping")
	return nil
}

// checkPortFree fails early, with a message that says what to do, when the
// WireGuard port is taken; wireguard-go would only report an errno.
func checkPortFree(port int) error {
	if port == 0 {
		return nil
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("UDP port %d is in use by another process: stop it or set --listen-port", port)
		}
		return fmt.Errorf("check UDP port %d: %w", port, err)
	}
	return c.Close()
}

// waitForNode waits until this node's Node object exists: the kubelet
// registers it, and MeshNodes, claims and Leases are owned by it.
func waitForNode(ctx context.Context, c kube.Clients, name string, log *slog.Logger) (*corev1.Node, error) {
	deadline := time.Now().Add(nodeWaitTimeout)
	for {
		n, err := c.Core.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return n, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("read Node %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("Node %s does not exist after %s: check --node-name matches the kubelet's node name", name, nodeWaitTimeout)
		}
		log.Info("waiting for the Node object to be registered", "node", name)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// trigger asks the loop for a reconcile. Many triggers while one reconcile
// runs collapse into one more.
func (d *Daemon) trigger() { kickChan(d.kick) }

// kickChan signals a buffered channel of one without blocking: a signal
// already pending covers this one too.
func kickChan(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// loop reconciles on every trigger, on a failed reconcile after a backoff,
// and every localResync.
func (d *Daemon) loop(ctx context.Context) {
	resync := time.NewTicker(localResync)
	defer resync.Stop()
	retry := time.NewTimer(0) // first reconcile right away
	backoff := retryMin
	for {
		select {
		case <-ctx.Done():
			retry.Stop()
			return
		case <-d.kick:
		case <-resync.C:
		case <-retry.C:
		}
		if err := d.reconcile(ctx); err != nil {
			d.log.Warn("reconcile failed; retrying", "err", err, "in", backoff)
			d.setNotReady(err.Error())
			retry.Reset(backoff)
			backoff = min(backoff*2, retryMax)
			continue
		}
		backoff = retryMin
	}
}

// heartbeat renews the node's Lease every interval. After
// apiFailuresNotReady failures in a row the node reports not ready, with
// the reason, until a renewal succeeds again; peers, routes and the
// WireGuard device are not touched, so traffic between nodes keeps flowing
// while the API is away.
func (d *Daemon) heartbeat(ctx context.Context) {
	t := time.NewTicker(d.cfg.HeartbeatInterval.Duration)
	defer t.Stop()
	failures := 0
	var since time.Time
	for {
		rctx, cancel := context.WithTimeout(ctx, min(apiCallTimeout, d.cfg.HeartbeatInterval.Duration))
		err := kube.RenewLease(rctx, d.clients, d.currentNode(), d.cfg.Namespace, d.cfg.HeartbeatInterval.Duration)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if failures == 0 {
				since = time.Now()
			}
			failures++
			d.log.Warn("heartbeat failed", "err", err, "failures", failures)
			if failures >= apiFailuresNotReady {
				d.setAPIDown(fmt.Sprintf("cannot reach the Kubernetes API for %s (%d Lease renewals failed; last: %v); the mesh keeps its last known state",
					time.Since(since).Round(time.Second), failures, err))
			}
		case failures > 0:
			d.log.Info("heartbeat works again", "after_failures", failures)
			failures = 0
			d.setAPIDown("")
			d.trigger() // catch up on what changed meanwhile, and say ready
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// currentNode is this node's Node as last seen. The reconcile loop refreshes
// it and the heartbeat reads it, so it is read under the lock.
func (d *Daemon) currentNode() *corev1.Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.node
}

// setAPIDown records why the API is unreachable ("" once it is back).
func (d *Daemon) setAPIDown(reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.apiDown = reason
	if reason != "" {
		d.ready, d.reason = false, reason
	}
}

func (d *Daemon) setNotReady(reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ready, d.reason = false, reason
	// At debug level the start-up steps are timed, to see where a slow
	// start spends its time.
	d.log.Debug("state", "not_ready", reason)
}

// setReady marks the node ready, unless the API is unreachable: a
// reconcile from the informers' caches succeeds then too, but the node's
// view of the mesh can no longer be trusted to be current.
func (d *Daemon) setReady() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.apiDown != "" {
		d.ready, d.reason = false, d.apiDown
		return
	}
	d.ready, d.reason = true, ""
}
