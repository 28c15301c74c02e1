package fakedaemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/wirelace/wirelace/daemon/api"
	"github.com/wirelace/wirelace/netconf"
)

// errChained is what the fake answers in chained mode, which is tested
// against real daemons in the lab (e2e/chained_test.go) instead.
var errChained = errors.New("fake wirelaced: chained mode is not served")

// backend is the fake's api.Backend: allocations in memory, the lowest
// free addresses first.
type backend struct {
	mu     sync.Mutex
	opts   Options
	ready  bool
	reason string
	allocs map[netconf.AttachmentKey]netconf.Allocation
}

var _ api.Backend = (*backend)(nil)

func newBackend(opts Options) *backend {
	return &backend{opts: opts, ready: true, allocs: map[netconf.AttachmentKey]netconf.Allocation{}}
}

func (b *backend) setReady(ready bool, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ready, b.reason = ready, reason
}

func (b *backend) setMTU(mtu int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opts.MTU = mtu
}

func (b *backend) allocated(key netconf.AttachmentKey) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.allocs[key]
	return ok
}

func (b *backend) release(key netconf.AttachmentKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.allocs, key)
}

func (b *backend) Status(bool) netconf.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return netconf.Status{Ready: b.ready, Reason: b.reason, Node: "fake", Interface: "lace0", MTU: b.opts.MTU}
}

func (b *backend) Allocate(_ context.Context, r netconf.AllocateRequest) (netconf.AllocateResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.ready {
		return netconf.AllocateResponse{}, fmt.Errorf("%w: %s", api.ErrNotReady, b.reason)
	}
	return b.allocateLocked(r), nil
}

// allocate is Allocate whether or not the daemon is ready.
func (b *backend) allocate(req netconf.AllocateRequest) netconf.AllocateResponse {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.allocateLocked(req)
}

// allocateLocked returns the request's allocation, making it with the
// lowest free addresses (after the gateway) if there is none.
func (b *backend) allocateLocked(req netconf.AllocateRequest) netconf.AllocateResponse {
	a, ok := b.allocs[req.AttachmentKey]
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
		if b.opts.IPv4 {
			a.IPs = append(a.IPs, b.free(PodCIDRv4))
		}
		if b.opts.IPv6 {
			a.IPs = append(a.IPs, b.free(PodCIDRv6))
		}
		b.allocs[req.AttachmentKey] = a
	}
	resp := netconf.AllocateResponse{MTU: b.opts.MTU}
	for _, ip := range a.IPs {
		p := netip.MustParsePrefix(ip)
		resp.IPs = append(resp.IPs, netconf.AllocatedIP{Address: ip, Gateway: p.Masked().Addr().Next().String()})
	}
	return resp
}

func (b *backend) free(cidr string) string {
	p := netip.MustParsePrefix(cidr)
	used := map[string]bool{}
	for _, a := range b.allocs {
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

func (b *backend) Release(_ context.Context, key netconf.AttachmentKey) error {
	b.release(key)
	return nil
}

func (b *backend) GC(_ context.Context, r netconf.GCRequest) (netconf.GCResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	valid := keySet(r.Valid)
	resp := netconf.GCResponse{Released: []netconf.AttachmentKey{}}
	for _, a := range b.sortedLocked() {
		if a.Network == r.Network && !valid[a.AttachmentKey] {
			delete(b.allocs, a.AttachmentKey)
			resp.Released = append(resp.Released, a.AttachmentKey)
		}
	}
	return resp, nil
}

// gcAll releases every allocation, of any network, not in valid.
func (b *backend) gcAll(valid []netconf.AttachmentKey) []netconf.AttachmentKey {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := keySet(valid)
	var released []netconf.AttachmentKey
	for k := range b.allocs {
		if !keep[k] {
			delete(b.allocs, k)
			released = append(released, k)
		}
	}
	return released
}

func (b *backend) Allocations() (netconf.ListResponse, error) {
	return netconf.ListResponse{Allocations: b.sorted()}, nil
}

func (b *backend) sorted() []netconf.Allocation {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sortedLocked()
}

func (b *backend) sortedLocked() []netconf.Allocation {
	out := make([]netconf.Allocation, 0, len(b.allocs))
	for _, a := range b.allocs {
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

func (b *backend) Register(context.Context, netconf.RegisterRequest) (netconf.RegisterResponse, error) {
	return netconf.RegisterResponse{}, errChained
}

func (b *backend) ReleaseChained(context.Context, netconf.ChainedReleaseRequest) error {
	return errChained
}

func (b *backend) GCChained(context.Context, netconf.ChainedGCRequest) (netconf.GCResponse, error) {
	return netconf.GCResponse{}, errChained
}

func (b *backend) Registrations() (netconf.ChainedListResponse, error) {
	return netconf.ChainedListResponse{}, errChained
}

func keySet(keys []netconf.AttachmentKey) map[netconf.AttachmentKey]bool {
	set := make(map[netconf.AttachmentKey]bool, len(keys))
	for _, k := range keys {
		set[k] = true
	}
	return set
}
