// Package fakedaemon serves wirelaced's local IPAM and status API from
// memory on a unix socket, for the plugins' tests: the contract of package
// netconf, with knobs to make the daemon down, not ready, or report an MTU.
package fakedaemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

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

// Daemon is the fake wirelaced.
type Daemon struct {
	socket string

	mu     sync.Mutex
	opts   Options
	ready  bool
	reason string
	allocs map[netconf.AttachmentKey]netconf.Allocation
	srv    *http.Server
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
		socket: filepath.Join(dir, "wirelaced.sock"),
		opts:   opts,
		ready:  true,
		allocs: map[netconf.AttachmentKey]netconf.Allocation{},
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
			delete(d.allocs, p.AttachmentKey)
		}
		_ = os.Remove(p.Path)
	}
	_ = os.Remove(d.socket)
	ln, err := net.Listen("unix", d.socket)
	if err != nil {
		return fmt.Errorf("fake wirelaced: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+netconf.StatusPath, d.status)
	mux.HandleFunc("POST "+netconf.IPAMAllocatePath, d.allocate)
	mux.HandleFunc("POST "+netconf.IPAMReleasePath, d.release)
	mux.HandleFunc("POST "+netconf.IPAMGCPath, d.gc)
	mux.HandleFunc("GET "+netconf.IPAMListPath, d.list)
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go d.srv.Serve(ln)
	return nil
}

// Down stops serving, as a crashed daemon: nothing answers on the socket.
func (d *Daemon) Down() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv != nil {
		d.srv.Close()
		d.srv = nil
	}
	_ = os.Remove(d.socket)
}

// SetReady makes the daemon ready, or not ready for reason (status says so
// and allocations are refused with 503).
func (d *Daemon) SetReady(ready bool, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ready, d.reason = ready, reason
}

// SetMTU sets the MTU the status reports.
func (d *Daemon) SetMTU(mtu int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.opts.MTU = mtu
}

// Allocations returns the current allocations, sorted by key.
func (d *Daemon) Allocations() []netconf.Allocation {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sorted()
}

// Allocated says whether key has an allocation.
func (d *Daemon) Allocated(key netconf.AttachmentKey) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.allocs[key]
	return ok
}

// Allocate allocates for key directly, as a lost DEL would leave it.
func (d *Daemon) Allocate(network string, key netconf.AttachmentKey) netconf.AllocateResponse {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.allocateLocked(netconf.AllocateRequest{Network: network, AttachmentKey: key})
}

func (d *Daemon) sorted() []netconf.Allocation {
	out := make([]netconf.Allocation, 0, len(d.allocs))
	for _, a := range d.allocs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ContainerID != out[j].ContainerID {
			return out[i].ContainerID < out[j].ContainerID
		}
		return out[i].IfName < out[j].IfName
	})
	return out
}

func (d *Daemon) status(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	reply(w, http.StatusOK, netconf.Status{Ready: d.ready, Reason: d.reason, Node: "fake", Interface: "lace0", MTU: d.opts.MTU})
}

func (d *Daemon) allocate(w http.ResponseWriter, r *http.Request) {
	var req netconf.AllocateRequest
	if !decode(w, r, &req) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ready {
		reply(w, http.StatusServiceUnavailable, netconf.Error{Error: "not ready: " + d.reason})
		return
	}
	if req.ContainerID == "" || req.IfName == "" {
		reply(w, http.StatusBadRequest, netconf.Error{Error: "containerID and ifName are required"})
		return
	}
	reply(w, http.StatusOK, d.allocateLocked(req))
}

// allocateLocked returns key's allocation, making it with the lowest free
// addresses (after the gateway) if there is none.
func (d *Daemon) allocateLocked(req netconf.AllocateRequest) netconf.AllocateResponse {
	a, ok := d.allocs[req.AttachmentKey]
	if !ok {
		a = netconf.Allocation{
			AttachmentKey: req.AttachmentKey,
			Network:       req.Network,
			Netns:         req.Netns,
			PodNamespace:  req.PodNamespace,
			PodName:       req.PodName,
			PodUID:        req.PodUID,
			Created:       time.Now().UTC().Format(time.RFC3339),
		}
		if d.opts.IPv4 {
			a.IPs = append(a.IPs, d.free(PodCIDRv4))
		}
		if d.opts.IPv6 {
			a.IPs = append(a.IPs, d.free(PodCIDRv6))
		}
		d.allocs[req.AttachmentKey] = a
	}
	resp := netconf.AllocateResponse{MTU: d.opts.MTU}
	for _, ip := range a.IPs {
		p := netip.MustParsePrefix(ip)
		resp.IPs = append(resp.IPs, netconf.AllocatedIP{Address: ip, Gateway: p.Masked().Addr().Next().String()})
	}
	return resp
}

func (d *Daemon) free(cidr string) string {
	p := netip.MustParsePrefix(cidr)
	used := map[string]bool{}
	for _, a := range d.allocs {
		for _, ip := range a.IPs {
			used[ip] = true
		}
	}
	for ip := p.Addr().Next().Next(); p.Contains(ip); ip = ip.Next() {
		s := netip.PrefixFrom(ip, p.Bits()).String()
		if !used[s] {
			return s
		}
	}
	panic("fake wirelaced: pool " + cidr + " exhausted")
}

func (d *Daemon) release(w http.ResponseWriter, r *http.Request) {
	var req netconf.ReleaseRequest
	if !decode(w, r, &req) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.allocs, req.AttachmentKey)
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) gc(w http.ResponseWriter, r *http.Request) {
	var req netconf.GCRequest
	if !decode(w, r, &req) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	valid := map[netconf.AttachmentKey]bool{}
	for _, k := range req.Valid {
		valid[k] = true
	}
	resp := netconf.GCResponse{Released: []netconf.AttachmentKey{}}
	for _, a := range d.sorted() {
		if a.Network == req.Network && !valid[a.AttachmentKey] {
			delete(d.allocs, a.AttachmentKey)
			resp.Released = append(resp.Released, a.AttachmentKey)
		}
	}
	reply(w, http.StatusOK, resp)
}

func (d *Daemon) list(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	reply(w, http.StatusOK, netconf.ListResponse{Allocations: d.sorted()})
}

func decode(w http.ResponseWriter, r *http.Request, into any) bool {
	if err := json.NewDecoder(r.Body).Decode(into); err != nil && !errors.Is(err, http.ErrBodyReadAfterClose) {
		reply(w, http.StatusBadRequest, netconf.Error{Error: "bad request: " + err.Error()})
		return false
	}
	return true
}

func reply(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// GCForTest releases every allocation not in valid, as the daemon's GC
// does, without going through a plugin.
func (d *Daemon) GCForTest(valid []netconf.AttachmentKey) ([]netconf.AttachmentKey, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := map[netconf.AttachmentKey]bool{}
	for _, k := range valid {
		keep[k] = true
	}
	var released []netconf.AttachmentKey
	for k := range d.allocs {
		if !keep[k] {
			delete(d.allocs, k)
			released = append(released, k)
		}
	}
	return released, nil
}
