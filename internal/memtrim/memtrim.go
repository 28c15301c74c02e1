// Package memtrim gives back to the OS the memory a burst of traffic left in
// the Go heap, once the burst is over.
//
// wireguard-go takes a 64 KiB buffer from a sync.Pool for every packet in
// flight, whatever its size, so a bulk transfer grows the heap by hundreds
// of MiB. When the traffic stops, the runtime keeps that memory: pooled
// buffers survive until two garbage collections have passed, a collection
// comes only with new allocation or every two minutes, and the scavenger
// returns freed pages slowly. An idle node would hold its busiest moment's
// memory for minutes. A Trimmer watches the heap and, when it holds much
// more than at rest plus the garbage GOGC allows after a while in which
// almost nothing was allocated or sent (the burst is over), collects twice
// and returns the free pages at once.
package memtrim

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Defaults: a check every Interval costs one read of five runtime metrics;
// a trim costs two collections of a heap that is mostly garbage.
const (
	// Interval is how often the heap is looked at.
	Interval = 10 * time.Second
	// Slack is how much more than at rest the heap may hold before a
	// trim: less is not worth two collections.
	Slack = 16 << 20
	// QuietAlloc is the most a quiet interval allocates. A node at rest
	// with a thousand peers allocates a few MiB per interval (probes,
	// status, counters); bulk traffic through wireguard-go allocates
	// hundreds, because each collection empties its pools.
	QuietAlloc = 32 << 20
	// QuietIntervals is how many quiet intervals in a row make the burst
	// over: memory comes back 20-30 s after the traffic stops. A trim
	// empties wireguard-go's pools and returns their pages, so the next
	// transfer faults in and zeroes a fresh buffer for every packet in
	// flight (a fifth of a receiver's CPU in the bench's first seconds);
	// traffic that pauses for less keeps its buffers.
	QuietIntervals = 3
	// QuietTraffic is the most bytes a quiet interval moves through the
	// node's WireGuard device (Trimmer.Traffic): about 13 Mbit/s. It is
	// what says a transfer is on, as wireguard-go recycles its buffers
	// through pools: a long transfer can allocate next to nothing between
	// two collections, and a trim in its middle would only make it fault
	// every buffer in again.
	QuietTraffic = 16 << 20
)

// Sample is what the decision needs from the runtime.
type Sample struct {
	// Held is heap memory the runtime holds from the OS: objects (live or
	// not yet swept), unused parts of spans, and free pages not yet
	// returned.
	Held uint64
	// Allocated is the cumulative count of bytes allocated.
	Allocated uint64
	// GCPercent is GOGC: between two collections the heap may grow by
	// this percentage of what the last one left, in normal operation.
	GCPercent uint64
	// Traffic is the cumulative count of bytes the node's WireGuard
	// device moved (0 without Trimmer.Traffic).
	Traffic uint64
}

// policy decides when to trim. It is pure, so the decision is tested
// without a runtime to provoke.
type policy struct {
	slack, quietAlloc, quietTraffic uint64
	// quietIntervals is QuietIntervals; quietRun counts the quiet
	// intervals in a row up to now.
	quietIntervals, quietRun int
	// rest is what the heap held right after the last trim, or less if
	// the runtime shrank it since: the level a quiet node returns to.
	// Until a first trim it is unknown: a sample taken at start could be
	// in the middle of a burst, and would be no rest at all.
	rest  uint64
	known bool
	last  Sample
	seen  bool
}

// observe takes the sample of a new interval and reports whether to trim.
func (p *policy) observe(s Sample) bool {
	defer func() { p.last, p.seen = s, true }()
	if !p.seen {
		return false // no allocation rate yet
	}
	if s.Allocated-p.last.Allocated < p.quietAlloc && s.Traffic-p.last.Traffic < p.quietTraffic {
		p.quietRun++
	} else {
		p.quietRun = 0
	}
	quiet := p.quietRun >= p.quietIntervals
	if !p.known {
		// The first quiet moment learns the rest, by trimming.
		return quiet && s.Held > p.slack
	}
	if s.Held < p.rest {
		// The runtime gave memory back by itself; this is the new rest.
		p.rest = s.Held
		return false
	}
	// Garbage up to GOGC of the rest between two collections is normal
	// (a node with a thousand peers reconciling makes some); trimming
	// that would only repeat collections the runtime does anyway.
	return quiet && s.Held > p.rest+p.rest*s.GCPercent/100+p.slack
}

// trimmed records what the heap holds right after a trim.
func (p *policy) trimmed(s Sample) { p.rest, p.known, p.last = s.Held, true, s }

// Trimmer runs the policy against the Go runtime.
type Trimmer struct {
	log    *slog.Logger
	every  time.Duration
	policy policy
	// OnTrim, if set, is called after each trim with the bytes the heap
	// held before and after (for a metric).
	OnTrim func(before, after uint64)
	// Traffic, if set, returns the bytes the node's WireGuard device has
	// moved so far (see QuietTraffic). It is read once per Interval; when
	// it fails, the last count stands, so allocation alone decides.
	Traffic func() (uint64, error)
}

// New returns a Trimmer with the package defaults.
func New(log *slog.Logger) *Trimmer {
	return &Trimmer{log: log, every: Interval, policy: policy{slack: Slack, quietAlloc: QuietAlloc, quietTraffic: QuietTraffic, quietIntervals: QuietIntervals}}
}

// Run checks the heap every Interval until ctx ends.
func (t *Trimmer) Run(ctx context.Context) {
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	samples := newReader()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		before := t.sample(samples)
		if !t.policy.observe(before) {
			continue
		}
		// The first collection moves pooled buffers to the pools' victim
		// caches, the second frees them; FreeOSMemory returns the pages.
		debug.FreeOSMemory()
		debug.FreeOSMemory()
		after := t.sample(samples)
		t.policy.trimmed(after)
		t.log.Debug("returned idle heap memory to the OS", "held_before_mib", before.Held>>20, "held_after_mib", after.Held>>20)
		if t.OnTrim != nil {
			t.OnTrim(before.Held, after.Held)
		}
	}
}

// sample reads the runtime's figures and the device's traffic.
func (t *Trimmer) sample(r *reader) Sample {
	s := r.read()
	if t.Traffic == nil {
		return s
	}
	n, err := t.Traffic()
	if err != nil {
		t.log.Debug("no traffic counters for the memory trim", "err", err)
		n = t.policy.last.Traffic
	}
	s.Traffic = n
	return s
}

// reader reads Samples from runtime/metrics, reusing its buffer.
type reader struct{ s []metrics.Sample }

func newReader() *reader {
	return &reader{s: []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/gogc:percent"},
	}}
}

func (r *reader) read() Sample {
	metrics.Read(r.s)
	v := func(i int) uint64 {
		if r.s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return r.s[i].Value.Uint64()
	}
	return Sample{Held: v(0) + v(1) + v(2), Allocated: v(3), GCPercent: v(4)}
}
