package server

import (
	"net"
	"net/netip"
	"sync"
)

// ipv6SourceBits is how much of an IPv6 address counts as one source for
// the per-source handshake limit. A host is routinely given a whole /64,
// so counting single addresses would let it open as many handshakes as it
// likes.
const ipv6SourceBits = 64

// admission bounds the handshakes in progress, overall and per source
// address. A connection that has not authenticated yet is anyone's: without
// these limits a flood of them holds a goroutine, buffers and a file
// descriptor each until the auth timeout. The accept loop asks before it
// starts a connection's goroutine, so one refused costs only its accept.
type admission struct {
	max, maxPerSource int

	mu       sync.Mutex
	total    int
	bySource map[netip.Prefix]int // only sources with handshakes in progress
}

func newAdmission(maxTotal, maxPerSource int) *admission {
	return &admission{max: maxTotal, maxPerSource: maxPerSource, bySource: make(map[netip.Prefix]int)}
}

// acquire reserves a handshake slot for src. It returns "" on success, which
// the caller must pair with release(src), or the refused reason (a metric
// label) when a limit is reached.
func (a *admission) acquire(src netip.Prefix) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.total >= a.max {
		return refusedHandshakes
	}
	if a.bySource[src] >= a.maxPerSource {
		return refusedSourceHandshakes
	}
	a.total++
	a.bySource[src]++
	return ""
}

// release frees the slot acquire reserved for src.
func (a *admission) release(src netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if n := a.bySource[src] - 1; n > 0 {
		a.bySource[src] = n
	} else {
		delete(a.bySource, src) // the map holds only sources in progress
	}
}

// inFlight is the number of handshakes in progress.
func (a *admission) inFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}

// sourceOf is the source a connection counts against: its IPv4 address, or
// its IPv6 /64. Connections without an IP address (a test's in-memory
// listener, say) all share the zero Prefix.
func sourceOf(addr net.Addr) netip.Prefix {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}
	}
	ip := tcp.AddrPort().Addr().Unmap()
	bits := ip.BitLen()
	if ip.Is6() {
		bits = ipv6SourceBits
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}
