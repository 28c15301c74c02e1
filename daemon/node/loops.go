package node

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/util/workqueue"

	"github.com/wirelace/wirelace/daemon/kube"
	"github.com/wirelace/wirelace/internal/memtrim"
)

// runLoops runs the daemon's loops until ctx ends. Each has what wakes it
// and how often it runs when nothing does:
//
//	loop       woken by                               at least every
//	reconcile  informer events, NAT results, the      localResync (30 s); after a
//	           heartbeat's recovery (trigger)         failure, retryMin..retryMax
//	heartbeat  -                                      HeartbeatInterval (Lease)
//	ipam       pod events (podKick)                   IPAMReleaseGrace/4 (>= 1 s)
//	paths      packets, probes, new peers (kick)      pathTick, or sooner when a
//	                                                  path machine asks
//	nat        -                                      natRefresh (STUN)
//	memory     -                                      memtrim.Interval
//	relays     one per relay: reconnects with backoff (relay/client)
//
// Only the reconcile loop writes peers, routes and nftables, and only the
// heartbeat and the reconcile (its MeshNode) write to the API.
func (d *Daemon) runLoops(ctx context.Context) {
	go d.heartbeat(ctx)
	go d.ipamLoop(ctx)
	if d.relays != nil {
		d.relays.run(ctx)
	}
	go d.paths.run(ctx)
	go d.natLoop(ctx)
	trim := memtrim.New(d.log)
	trim.OnTrim = func(before, after uint64) { d.metrics.memoryTrims.Inc() }
	trim.Traffic = d.dev.Traffic
	go trim.Run(ctx)
	d.reconcileLoop(ctx)
}

// reconcileKey is the reconcile queue's only item: the whole node is
// reconciled at once, so any number of changes means one more reconcile.
const reconcileKey = "node"

func newReconcileQueue() workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryMin, retryMax),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "reconcile"})
}

// trigger asks for a reconcile. Many triggers while one reconcile runs
// collapse into one more.
func (d *Daemon) trigger() { d.queue.Add(reconcileKey) }

// kickChan signals a buffered channel of one without blocking: a signal
// already pending covers this one too.
func kickChan(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// reconcileLoop reconciles on every trigger, after a backoff when a
// reconcile failed, and every localResync.
func (d *Daemon) reconcileLoop(ctx context.Context) {
	go func() {
		resync := time.NewTicker(localResync)
		defer resync.Stop()
		for {
			select {
			case <-ctx.Done():
				d.queue.ShutDown()
				return
			case <-resync.C:
				d.trigger()
			}
		}
	}()
	d.trigger() // the first reconcile, right away
	for {
		key, shutdown := d.queue.Get()
		if shutdown {
			return
		}
		if err := d.reconcile(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("reconcile failed; retrying", "err", err, "attempt", d.queue.NumRequeues(key)+1)
			d.setNotReady(err.Error())
			d.queue.AddRateLimited(key)
		} else {
			d.queue.Forget(key)
		}
		d.queue.Done(key)
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
	lease := kube.NewLease(d.clients, d.cfg.Namespace)
	failures := 0
	var since time.Time
	for {
		rctx, cancel := context.WithTimeout(ctx, min(apiCallTimeout, d.cfg.HeartbeatInterval.Duration))
		err := lease.Renew(rctx, d.currentNode(), d.cfg.HeartbeatInterval.Duration)
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
