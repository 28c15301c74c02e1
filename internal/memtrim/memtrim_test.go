package memtrim

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

const mib = 1 << 20

// step is one interval's sample and whether the policy should trim on it.
type step struct {
	name string
	s    Sample
	trim bool
}

// observeAll feeds the policy each step in turn.
func observeAll(t *testing.T, p *policy, steps []step) {
	t.Helper()
	for _, st := range steps {
		if got := p.observe(st.s); got != st.trim {
			t.Fatalf("%s: trim = %v, want %v", st.name, got, st.trim)
		}
	}
}

func TestPolicy(t *testing.T) {
	p := policy{slack: 16 * mib, quietAlloc: 32 * mib, quietTraffic: 16 * mib, quietIntervals: 1}
	steps := []step{
		{"the first sample, in a burst (the daemon just started)", Sample{Held: 150 * mib, Allocated: 400 * mib, GCPercent: 100}, false},
		{"the burst goes on: the heap grows while allocating fast", Sample{Held: 250 * mib, Allocated: 2000 * mib, GCPercent: 100}, false},
		{"still busy", Sample{Held: 260 * mib, Allocated: 4000 * mib, GCPercent: 100}, false},
		{"quiet: the first trim, which learns the rest", Sample{Held: 260 * mib, Allocated: 4010 * mib, GCPercent: 100}, true},
	}
	observeAll(t, &p, steps)
	p.trimmed(Sample{Held: 34 * mib, Allocated: 4011 * mib, GCPercent: 100})
	more := []step{
		{"quiet, at the new rest", Sample{Held: 35 * mib, Allocated: 4012 * mib, GCPercent: 100}, false},
		{"quiet, garbage GOGC allows plus slack", Sample{Held: 84 * mib, Allocated: 4013 * mib, GCPercent: 100}, false},
		{"the runtime shrank by itself: new rest", Sample{Held: 30 * mib, Allocated: 4014 * mib, GCPercent: 100}, false},
		{"quiet, beyond GOGC's garbage and slack above the new rest", Sample{Held: 77 * mib, Allocated: 4015 * mib, GCPercent: 100}, true},
		{"at GOGC=50 less garbage is normal: a lower threshold", Sample{Held: 62 * mib, Allocated: 4016 * mib, GCPercent: 50}, true},
	}
	observeAll(t, &p, more)
}

// TestPolicyWaitsOutPauses: a transfer that pauses for less than
// quietIntervals keeps its buffers; the trim comes after that many quiet
// intervals in a row.
func TestPolicyWaitsOutPauses(t *testing.T) {
	p := policy{slack: 16 * mib, quietAlloc: 32 * mib, quietTraffic: 16 * mib, quietIntervals: 3}
	p.trimmed(Sample{Held: 34 * mib, Allocated: 1000 * mib, GCPercent: 100})
	steps := []step{
		{"a transfer", Sample{Held: 250 * mib, Allocated: 3000 * mib, GCPercent: 100}, false},
		{"a pause", Sample{Held: 250 * mib, Allocated: 3001 * mib, GCPercent: 100}, false},
		{"still paused", Sample{Held: 250 * mib, Allocated: 3002 * mib, GCPercent: 100}, false},
		{"the next transfer", Sample{Held: 260 * mib, Allocated: 5000 * mib, GCPercent: 100}, false},
		{"quiet once", Sample{Held: 260 * mib, Allocated: 5001 * mib, GCPercent: 100}, false},
		{"quiet twice", Sample{Held: 260 * mib, Allocated: 5002 * mib, GCPercent: 100}, false},
		{"quiet three times in a row: the burst is over", Sample{Held: 260 * mib, Allocated: 5003 * mib, GCPercent: 100}, true},
	}
	observeAll(t, &p, steps)
}

// A transfer that allocates next to nothing (wireguard-go recycles its
// buffers) is still a transfer: the device's traffic keeps it from looking
// quiet, and the trim waits until it stops.
func TestPolicyWaitsOutTraffic(t *testing.T) {
	p := policy{slack: 16 * mib, quietAlloc: 32 * mib, quietTraffic: 16 * mib, quietIntervals: 2}
	p.trimmed(Sample{Held: 34 * mib, Allocated: 1000 * mib, GCPercent: 100})
	steps := []step{
		{"a transfer fills the pools", Sample{Held: 250 * mib, Allocated: 1300 * mib, GCPercent: 100, Traffic: 1000 * mib}, false},
		{"it goes on, allocating little", Sample{Held: 250 * mib, Allocated: 1301 * mib, GCPercent: 100, Traffic: 2000 * mib}, false},
		{"and on", Sample{Held: 250 * mib, Allocated: 1302 * mib, GCPercent: 100, Traffic: 3000 * mib}, false},
		{"it stops", Sample{Held: 250 * mib, Allocated: 1303 * mib, GCPercent: 100, Traffic: 3001 * mib}, false},
		{"quiet twice in a row", Sample{Held: 250 * mib, Allocated: 1304 * mib, GCPercent: 100, Traffic: 3002 * mib}, true},
	}
	observeAll(t, &p, steps)
}

// Counters that cannot be read leave the last count standing: the interval
// looks quiet as far as traffic goes, and allocation alone decides. A
// zero would look like a counter gone backwards, which uint64 arithmetic
// makes a huge interval of traffic, forever.
func TestTrafficUnreadable(t *testing.T) {
	tr := New(slog.New(slog.DiscardHandler))
	tr.policy.last.Traffic = 5000 * mib
	tr.Traffic = func() (uint64, error) { return 0, errors.New("no such link") }
	if s := tr.sample(newReader()); s.Traffic != 5000*mib {
		t.Fatalf("traffic %d after a failed read, want the last count %d", s.Traffic, uint64(5000*mib))
	}
	tr.Traffic = func() (uint64, error) { return 6000 * mib, nil }
	if s := tr.sample(newReader()); s.Traffic != 6000*mib {
		t.Fatalf("traffic %d, want the count read", s.Traffic)
	}
}

// TestTrimmerReturnsPooledBuffers fills a sync.Pool with 64 KiB buffers as
// wireguard-go does under bulk traffic, stops using them, and checks that
// the Trimmer gives the memory back once its checks find the heap quiet.
func TestTrimmerReturnsPooledBuffers(t *testing.T) {
	pool := sync.Pool{New: func() any { return new([65535]byte) }}
	r := newReader()
	rest := r.read()

	// The burst: 3000 packets in flight at once, then all returned.
	bufs := make([]*[65535]byte, 3000)
	for i := range bufs {
		bufs[i] = pool.Get().(*[65535]byte)
		bufs[i][0] = byte(i)
	}
	for _, b := range bufs {
		pool.Put(b)
	}
	bufs = nil
	busy := r.read()
	if busy.Held < rest.Held+150*mib {
		t.Fatalf("the burst did not grow the heap: %d MiB at rest, %d MiB after", rest.Held/mib, busy.Held/mib)
	}

	tr := New(slog.New(slog.DiscardHandler))
	tr.every = 20 * time.Millisecond
	tr.policy.rest, tr.policy.known, tr.policy.last, tr.policy.seen = rest.Held, true, busy, true
	trimmed := make(chan [2]uint64, 1)
	tr.OnTrim = func(before, after uint64) {
		select {
		case trimmed <- [2]uint64{before, after}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	select {
	case got := <-trimmed:
		if got[1] > rest.Held+16*mib {
			t.Errorf("after the trim the heap holds %d MiB, at rest it held %d MiB", got[1]/mib, rest.Held/mib)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no trim within 5 s; the heap holds %d MiB, at rest %d MiB", r.read().Held/mib, rest.Held/mib)
	}
}
