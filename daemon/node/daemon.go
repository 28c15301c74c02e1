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
	"k8s.io/client-go/util/workqueue"

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

	// queue holds the one reconcile request: triggers while a reconcile
	// runs collapse into one more, and failures are retried with backoff.
	queue   workqueue.TypedRateLimitingInterface[string]
	podKick chan struct{}
	// cache is the reconcile loop's own (reconcile_cache.go).
	cache reconcileCache

	mu     sync.Mutex
	ready  bool
	reason string
	// apiDown says why the API is unreachable (heartbeat), "" while it is
	// reachable.
	apiDown string
	// peerNames maps public keys to node names for status output.
	peerNames map[string]string
	endpoints []string
	// portRival says which peer holds this node's port at their shared
	// NAT (notePortRival), "" if none.
	portRival string
}

// Run starts the daemon and blocks until ctx is cancelled (graceful stop) or
// start-up fails. Start-up errors are returned as one line that says what
// to fix.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	d := &Daemon{
		cfg:       cfg,
		log:       log,
		queue:     newReconcileQueue(),
		podKick:   make(chan struct{}, 1),
		stale:     newStaleTracker(cfg.IPAMReleaseGrace.Duration),
		reason:    "starting",
		peerNames: map[string]string{},
	}
	var undo cleanups
	defer undo.run()
	if err := d.start(ctx, &undo); err != nil {
		return err
	}
	log.Info("wirelaced started", "node", cfg.NodeName, "mesh_ips", d.meshIPs, "pod_cidrs", d.podCIDRs,
		"public_key", d.keys.WireGuard.PublicKey().String(), "listen_port", d.bind.Port(), "mtu", d.mtu)
	d.runLoops(ctx)
	log.Info("wirelaced stopping")
	return nil
}

// cleanups are undone last first when Run returns.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }

func (c cleanups) run() {
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

// start brings the daemon up, step by step, each step saying in the status
// what it waits for: the state on disk, the local API (so that plugins get
// "not ready, because ..." from the first moment), the Kubernetes API, the
// mesh IPs, pod networking, the WireGuard device, the informers.
func (d *Daemon) start(ctx context.Context, undo *cleanups) error {
	pools, err := d.cfg.MeshPools()
	if err != nil {
		return err
	}
	if err := d.openState(undo); err != nil {
		return err
	}
	if err := d.serveLocalAPI(undo); err != nil {
		return err
	}
	d.metrics = newMetrics(d)
	if d.cfg.MetricsListen != "" {
		if err := d.metrics.serve(ctx, d.cfg.MetricsListen, d.cfg.Profiling, d.log); err != nil {
			return fmt.Errorf("serve metrics on %s (set --metrics-listen, or empty to disable): %w", d.cfg.MetricsListen, err)
		}
	}
	if err := d.connectAPI(ctx); err != nil {
		return err
	}
	meshIPs, err := d.claimMeshIPs(ctx, pools)
	if err != nil {
		return err
	}
	if err := d.setUpPodNetworking(ctx, pools); err != nil {
		return err
	}
	if err := d.openDevice(meshIPs, undo); err != nil {
		return err
	}
	return d.startWatcher(ctx, undo)
}

// openState loads the keys and opens the IPAM store. The store opens
// before the local API serves, so pod address calls never see it missing;
// until the pod CIDRs are known they are answered with "not ready" (the
// plugins' "try again later").
func (d *Daemon) openState(undo *cleanups) error {
	var err error
	if d.keys, err = keys.LoadOrCreate(d.cfg.StateDir); err != nil {
		return err
	}
	if err := checkPortFree(d.cfg.ListenPort, "set --listen-port"); err != nil {
		return err
	}
	if d.ipam, err = ipam.Open(filepath.Join(d.cfg.StateDir, "ipam.db")); err != nil {
		return err
	}
	undo.add(func() { d.ipam.Close() })
	for _, r := range d.ipam.Repairs() {
		d.log.Warn("repaired the IPAM index", "detail", r)
	}
	return nil
}

// serveLocalAPI serves the plugins' and wirelacectl's socket.
func (d *Daemon) serveLocalAPI(undo *cleanups) error {
	srv, err := api.Listen(d.cfg.Socket, d, d.log)
	if err != nil {
		return err
	}
	go func() {
		if err := srv.Serve(); err != nil {
			d.log.Error("local API stopped", "err", err)
		}
	}()
	undo.add(func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		srv.Shutdown(sctx)
	})
	return nil
}

// connectAPI connects to the Kubernetes API and reads what start-up needs
// from it once: this node's Node, whether CiliumNodes are served, and the
// infrastructure's addresses.
func (d *Daemon) connectAPI(ctx context.Context) error {
	var err error
	d.setNotReady("connecting to the Kubernetes API")
	if d.clients, err = kube.Connect(ctx, d.cfg.Kubeconfig); err != nil {
		return err
	}
	d.metrics.reg.MustRegister(d.clients.Requests)
	d.setNotReady("waiting for Node " + d.cfg.NodeName)
	if d.node, err = waitForNode(ctx, d.clients, d.cfg.NodeName, d.log); err != nil {
		return err
	}
	if err := d.useNodeListenPort(); err != nil {
		return err
	}
	if d.ciliumNodes, err = kube.CiliumNodesServed(d.clients); err != nil {
		return err
	}
	d.infra, err = d.infrastructure(ctx)
	return err
}

// useNodeListenPort takes the listen port from the Node's annotation, if it
// has one (config.ListenPortAnnotation), and checks that port too.
func (d *Daemon) useNodeListenPort() error {
	port, ok, err := config.NodeListenPort(d.node.Annotations)
	if err != nil {
		return fmt.Errorf("Node %s: %w", d.node.Name, err)
	}
	if !ok || port == d.cfg.ListenPort {
		return nil
	}
	d.log.Info("listen port set by the Node's annotation", "annotation", config.ListenPortAnnotation, "port", port, "configured", d.cfg.ListenPort)
	if err := checkPortFree(port, "change the Node's "+config.ListenPortAnnotation+" annotation"); err != nil {
		return fmt.Errorf("Node %s: %w", d.node.Name, err)
	}
	d.mu.Lock() // the local API's Status reads it meanwhile
	d.cfg.ListenPort = port
	d.mu.Unlock()
	return nil
}

// claimMeshIPs claims (or finds its existing claim on) one mesh IP in each
// pool.
func (d *Daemon) claimMeshIPs(ctx context.Context, pools []netip.Prefix) ([]netip.Addr, error) {
	d.setNotReady("claiming mesh IPs")
	var meshIPs []netip.Addr
	for _, pool := range pools {
		p, err := kube.Claim(ctx, d.clients, d.node, pool, pool.Addr().BitLen(), v1alpha1.PurposeMeshIP, d.log)
		if err != nil {
			return nil, fmt.Errorf("claim mesh IP in %s: %w", pool, err)
		}
		meshIPs = append(meshIPs, p.Addr())
	}
	return meshIPs, nil
}

// setUpPodNetworking finds the node's pod CIDRs, hands them to the IPAM
// store and turns forwarding on.
func (d *Daemon) setUpPodNetworking(ctx context.Context, pools []netip.Prefix) error {
	d.setNotReady("setting up pod networking")
	var err error
	if d.podCIDRs, err = d.findPodCIDRs(ctx, d.node); err != nil {
		return err
	}
	if err := d.ipam.SetRanges(d.podCIDRs); err != nil {
		return fmt.Errorf("set pod CIDRs %v: %w", d.podCIDRs, err)
	}
	return enableForwarding(append(slices.Clone(pools), d.podCIDRs...))
}

// openDevice makes the Bind (with its path machines and relays) and opens
// the WireGuard device on it. Closing the device at the end stops
// wireguard-go but keeps the persistent link and its routes, so pods and
// peers keep their configuration across a restart.
func (d *Daemon) openDevice(meshIPs []netip.Addr, undo *cleanups) error {
	d.setNotReady("opening the WireGuard device")
	cfg := d.cfg
	mtu := meshMTU(cfg.MTU, cfg.Interface)
	b := bind.New(d.log)
	paths := newPaths(b, d.keys.Control, d.metrics, d.log)
	var relays *relaySet
	if len(cfg.Relays) > 0 {
		var err error
		relays, err = newRelaySet(cfg.Relays, cfg.RelayCA, cfg.FwMark, d.keys.WireGuard.PublicKey(), d.keys.Control, paths, d.log)
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
		Logger:         d.log,
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
	undo.add(func() { d.dev.Close() })
	return nil
}

// startWatcher starts the informers that trigger the reconcile and IPAM
// loops, and waits for their caches.
func (d *Daemon) startWatcher(ctx context.Context, undo *cleanups) error {
	var err error
	d.watcher, err = kube.NewWatcher(d.clients, d.cfg.NodeName, d.ciliumNodes, d.trigger, func() { kickChan(d.podKick) })
	if err != nil {
		return err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	undo.add(func() {
		stopWatch()
		d.watcher.Shutdown()
	})
	return d.watcher.Start(wctx, d.log)
}

// checkPortFree fails early, with a message that says what to do, when the
// WireGuard port is taken; wireguard-go would only report an errno. change
// says where the port came from, as a fix ("set --listen-port").
func checkPortFree(port int, change string) error {
	if port == 0 {
		return nil
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("UDP port %d is in use by another process: stop it or %s", port, change)
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
