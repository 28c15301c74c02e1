// Package fakedaemon serves wirelaced's local API for the plugins' tests:
// the real server of daemon/api (its routing, validation and errors) over
// an in-memory backend, with knobs to make the daemon down, not ready, or
// report an MTU.
package fakedaemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wirelace/wirelace/daemon/api"
	"github.com/wirelace/wirelace/netconf"
)

// Pod CIDRs of the fake node; the gateway is each CIDR's first address.
const (
	PodCIDRv4 = "10.244.1.0/24"
	PodCIDRv6 = "fd00:10:244:1::/64"
)

// Options choose the address families and the MTU.
type Options struct {
	IPv4, IPv6 bool
	MTU        int
}

// shutdownTimeout bounds Down: the plugins are short-lived processes, so
// no request should still be in flight when a test stops the daemon.
const shutdownTimeout = 5 * time.Second

// Daemon is the fake wirelaced.
type Daemon struct {
	socket  string
	backend *backend

	mu  sync.Mutex // guards srv
	srv *api.Server
}

// Start serves a dual-stack fake (unless opts say otherwise) on a socket in
// a fresh directory, stopped and removed when the test ends.
func Start(t testing.TB, opts Options) *Daemon {
	t.Helper()
	if !opts.IPv4 && !opts.IPv6 {
		opts.IPv4, opts.IPv6 = true, true
	}
	if opts.MTU == 0 {
		opts.MTU = 1420
	}
	// Not t.TempDir: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "wlfake")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &Daemon{
		socket:  filepath.Join(dir, "wirelaced.sock"),
		backend: newBackend(opts),
	}
	if err := d.Up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Down)
	return d
}

// Socket is the path the fake listens on.
func (d *Daemon) Socket() string { return d.socket }

// Up starts serving (again), keeping the allocations but for those a
// plugin recorded as pending releases while the fake was down.
func (d *Daemon) Up() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv != nil {
		return nil
	}
	// Like wirelaced at start: carry out the releases plugins recorded
	// while it was down.
	pending, _, err := netconf.ReadPendingReleases(d.socket)
	if err != nil {
		return fmt.Errorf("fake wirelaced: %w", err)
	}
	for _, p := range pending {
		if p.IPAM {
			d.backend.release(p.AttachmentKey)
		}
		_ = os.Remove(p.Path)
	}
	srv, err := api.Listen(d.socket, d.backend, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("fake wirelaced: %w", err)
	}
	go srv.Serve()
	d.srv = srv
	return nil
}

// Down stops serving, as a crashed daemon: nothing answers on the socket,
// which is removed.
func (d *Daemon) Down() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	_ = d.srv.Shutdown(ctx)
	d.srv = nil
}

// SetReady makes the daemon ready, or not ready for reason (status says so
// and allocations are refused with 503).
func (d *Daemon) SetReady(ready bool, reason string) { d.backend.setReady(ready, reason) }

// SetMTU sets the MTU the status reports.
func (d *Daemon) SetMTU(mtu int) { d.backend.setMTU(mtu) }

// Allocations returns the current allocations, sorted by key.
func (d *Daemon) Allocations() []netconf.Allocation { return d.backend.sorted() }

// Allocated says whether key has an allocation.
func (d *Daemon) Allocated(key netconf.AttachmentKey) bool { return d.backend.allocated(key) }

// Allocate allocates for key directly, as a lost DEL would leave it.
func (d *Daemon) Allocate(network string, key netconf.AttachmentKey) netconf.AllocateResponse {
	return d.backend.allocate(netconf.AllocateRequest{Network: network, AttachmentKey: key})
}

// GCForTest releases every allocation not in valid, as the daemon's GC
// does, without going through a plugin.
func (d *Daemon) GCForTest(valid []netconf.AttachmentKey) ([]netconf.AttachmentKey, error) {
	return d.backend.gcAll(valid), nil
}
