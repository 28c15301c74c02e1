// Package sendq is the queue between the goroutines that hand a relay
// connection datagrams (the relay's readers of other clients; the daemon's
// WireGuard senders) and the one goroutine that writes them onto its socket.
//
// It exists for throughput and for backpressure, which a channel of single
// packets gives neither of:
//
//   - The writer takes everything queued at once (Take), writes it with one
//     system call and releases it at once (Release): one lock, one wake-up and
//     one write per batch rather than per datagram.
//   - A producer that finds the queue full may wait, boundedly, for the
//     writer to make room (Push with a wait) instead of dropping. Relayed
//     WireGuard mostly carries TCP; a dropped datagram costs that TCP a
//     retransmission and a halved window, while a short wait merely slows the
//     producer to the pace the connection drains at, which is what TCP's own
//     flow control would do. The wait is bounded (Options.Wait), and a queue
//     whose writer spent a whole Wait inside one write (its connection is not
//     taking data) counts as stalled for Options.Holdoff, during which
//     producers drop at once rather than wait again: a connection that stopped
//     draining costs each producer at most one Wait per Holdoff, never a hang,
//     and never more than a few percent of its time.
//
// Sizes are counted as buffer capacity (the memory a queued packet pins),
// bounded by a byte limit and a packet limit.
package sendq

import (
	"context"
	"sync"
	"time"

	"github.com/wirelace/wirelace/internal/packet"
)

// Options size a Queue and its backpressure.
type Options struct {
	// MaxLen and MaxBytes bound the packets queued and the buffer capacity
	// queued or taken and not yet released.
	MaxLen, MaxBytes int
	// Wait is the longest a Push waits for room; 0 never waits.
	Wait time.Duration
	// Holdoff is how long a queue whose Wait ran out is treated as stalled:
	// Pushes that do not fit then fail at once.
	Holdoff time.Duration
}

// Queue is a bounded FIFO of packets with one consumer. Create it with New.
type Queue struct {
	opts Options

	// ready has capacity 1: a send means "there is something to take", and
	// a pending one coalesces any number of pushes into one wake-up.
	ready chan struct{}

	mu     sync.Mutex
	items  []*packet.Packet
	bytes  int64 // capacity of the buffers queued or taken and not released
	taken  int64 // capacity of the buffers taken and not released
	closed bool
	// space is closed (and set to nil) when Release or Close frees room;
	// producers waiting for room wait on it. nil while nobody waits.
	space chan struct{}
	// stalledUntil: until then a full queue fails Pushes without waiting.
	stalledUntil time.Time
	// writingSince is when the writer took the batch it has not released
	// yet; zero while it holds none.
	writingSince time.Time
}

// timers are reused across waits, by all queues: under sustained
// backpressure nearly every Push waits.
var timers sync.Pool

// New returns an empty queue.
func New(opts Options) *Queue {
	return &Queue{opts: opts, ready: make(chan struct{}, 1)}
}

// Ready is signalled when packets are waiting to be taken.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

// fits reports whether a packet of n bytes fits now. Callers hold q.mu.
func (q *Queue) fits(n int64) bool {
	return len(q.items) < q.opts.MaxLen && q.bytes+n <= int64(q.opts.MaxBytes)
}

// TryPush queues p if it fits now and reports whether it did; a packet not
// queued is still the caller's.
func (q *Queue) TryPush(p *packet.Packet) bool {
	n := int64(cap(p.Data))
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || !q.fits(n) {
		return false
	}
	q.add(p, n)
	return true
}

// add queues p and wakes the writer. Callers hold q.mu.
func (q *Queue) add(p *packet.Packet, n int64) {
	q.items = append(q.items, p)
	q.bytes += n
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Push queues p, waiting up to Options.Wait in all for room when the queue
// is full and not stalled. It returns false, leaving p the caller's, when p
// did not fit in time, the queue is closed, or ctx ended.
func (q *Queue) Push(ctx context.Context, p *packet.Packet) bool {
	n := int64(cap(p.Data))
	// One timer for the whole wait, however many wake-ups it takes: when
	// it fires, Wait has passed. (time.Now is not free on every machine,
	// and under backpressure nearly every Push waits.)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
			timers.Put(timer)
		}
	}()
	q.mu.Lock()
	for {
		if q.closed {
			q.mu.Unlock()
			return false
		}
		if q.fits(n) {
			q.add(p, n)
			q.mu.Unlock()
			return true
		}
		if timer == nil && (q.opts.Wait <= 0 || n > int64(q.opts.MaxBytes) || q.stalled()) {
			q.mu.Unlock()
			return false
		}
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		if timer == nil {
			timer = newTimer(q.opts.Wait)
		}
		select {
		case <-space:
		case <-timer.C:
			q.mu.Lock()
			if !q.closed && q.fits(n) {
				q.add(p, n)
				q.mu.Unlock()
				return true
			}
			q.waitExpired()
			q.mu.Unlock()
			return false
		case <-ctx.Done():
			return false
		}
		q.mu.Lock()
	}
}

// stalled reports whether the queue is in its holdoff. Callers hold q.mu.
func (q *Queue) stalled() bool {
	if q.stalledUntil.IsZero() {
		return false
	}
	if time.Now().Before(q.stalledUntil) {
		return true
	}
	q.stalledUntil = time.Time{}
	return false
}

// waitExpired is a producer's whole Wait gone by without room. When the
// writer has been inside one write all that time, the connection is not
// taking data (its reader stopped, or reads far slower than it is sent
// to): the queue counts as stalled for the holdoff. A writer that was
// merely not scheduled, on a busy machine, or whose freed room other
// producers took first, is no reason to. Callers hold q.mu.
func (q *Queue) waitExpired() {
	if q.writingSince.IsZero() {
		return
	}
	now := time.Now()
	if now.Sub(q.writingSince) >= q.opts.Wait {
		q.stalledUntil = now.Add(q.opts.Holdoff)
	}
}

// newTimer returns a running timer for d, reused when one is free.
func newTimer(d time.Duration) *time.Timer {
	if t, ok := timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// Take moves queued packets into dst, oldest first, up to maxBytes of
// datagram bytes (at least one packet) and maxItems packets, and returns
// it. Their capacity stays counted until Release.
func (q *Queue) Take(dst []*packet.Packet, maxItems, maxBytes int) []*packet.Packet {
	q.mu.Lock()
	defer q.mu.Unlock()
	k, size := 0, 0
	for k < len(q.items) && k < maxItems {
		size += len(q.items[k].Data)
		if k > 0 && size > maxBytes {
			break
		}
		k++
	}
	if k > 0 && q.writingSince.IsZero() {
		q.writingSince = time.Now()
	}
	for _, p := range q.items[:k] {
		q.taken += int64(cap(p.Data))
	}
	dst = append(dst, q.items[:k]...)
	rest := copy(q.items, q.items[k:])
	clear(q.items[rest:]) // no stale pointers keep packets alive
	q.items = q.items[:rest]
	if rest > 0 {
		// More is waiting: make sure the writer comes back for it.
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return dst
}

// Release returns the capacity of every packet taken since the last
// Release, written or discarded, to the queue's allowance, and wakes
// producers waiting for room. The writer calls it once per Take, after the
// write.
func (q *Queue) Release() {
	q.mu.Lock()
	q.bytes -= q.taken
	q.taken = 0
	q.writingSince = time.Time{}
	q.wakeLocked()
	q.mu.Unlock()
}

func (q *Queue) wakeLocked() {
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
}

// Close makes every later push fail and wakes waiting producers, and
// returns what was still queued (the caller releases it to its pool).
func (q *Queue) Close() []*packet.Packet {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.wakeLocked()
	left := q.items
	q.items = nil
	return left
}

// Closed reports whether Close was called.
func (q *Queue) Closed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// Len is the number of packets queued, and Bytes the buffer capacity they
// and the packets being written hold.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Bytes: see Len.
func (q *Queue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}
