package sendq

import (
	"context"
	"testing"
	"time"

	"github.com/wirelace/wirelace/internal/packet"
)

func newPacket(pool *packet.Pool, n int) *packet.Packet { return pool.Get(n) }

// A full queue whose writer drains makes the producer wait, not drop:
// every packet pushed arrives, in order.
func TestPushWaitsForSlowWriter(t *testing.T) {
	var pool packet.Pool
	q := New(Options{MaxLen: 4, MaxBytes: 1 << 20, Wait: 5 * time.Second, Holdoff: time.Second})
	const total = 200
	var got []byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		var batch []*packet.Packet
		for len(got) < total {
			<-q.Ready()
			batch = q.Take(batch[:0], 2, 1<<20) // slower than the producer
			for _, p := range batch {
				got = append(got, p.Data[0])
			}
			time.Sleep(100 * time.Microsecond)
			q.Release()
		}
	}()
	for i := range total {
		p := newPacket(&pool, 1)
		p.Data[0] = byte(i)
		if !q.Push(context.Background(), p) {
			t.Fatalf("packet %d dropped by a queue whose writer drains", i)
		}
	}
	<-done
	for i, b := range got {
		if b != byte(i) {
			t.Fatalf("packet %d arrived as %d: out of order", i, b)
		}
	}
}

// A writer stuck in a write (its connection takes nothing) costs a
// producer one bounded wait, and then, for the holdoff, none: the queue
// counts as stalled.
func TestPushStalledWriter(t *testing.T) {
	var pool packet.Pool
	const wait = time.Second
	q := New(Options{MaxLen: 1, MaxBytes: 1 << 20, Wait: wait, Holdoff: time.Hour})
	if !q.Push(context.Background(), newPacket(&pool, 1)) {
		t.Fatal("first packet refused by an empty queue")
	}
	q.Take(nil, 1, 1<<20) // the writer takes it and never gets it written
	q.TryPush(newPacket(&pool, 1))
	start := time.Now()
	if q.Push(context.Background(), newPacket(&pool, 1)) {
		t.Fatal("packet queued beyond MaxLen")
	}
	if waited := time.Since(start); waited < wait {
		t.Fatalf("first push into a full queue waited %v, want Wait (%v)", waited, wait)
	}
	start = time.Now()
	if q.Push(context.Background(), newPacket(&pool, 1)) {
		t.Fatal("packet queued beyond MaxLen")
	}
	if waited := time.Since(start); waited >= wait/2 {
		t.Fatalf("push into a stalled queue waited %v, want no wait", waited)
	}
	// Room still takes packets while stalled.
	q.Take(nil, 10, 1<<20)
	q.Release()
	if !q.TryPush(newPacket(&pool, 1)) {
		t.Fatal("a stalled queue with room refused a packet")
	}
}

// A wait that runs out while the writer is not inside a write (it was not
// scheduled, on a busy machine) drops that packet but does not mark the
// queue stalled: the next producer waits again.
func TestWaitRunsOutWithoutStallWhenWriterIsNotWriting(t *testing.T) {
	var pool packet.Pool
	q := New(Options{MaxLen: 1, MaxBytes: 1 << 20, Wait: 20 * time.Millisecond, Holdoff: time.Hour})
	q.TryPush(newPacket(&pool, 1))
	if q.Push(context.Background(), newPacket(&pool, 1)) {
		t.Fatal("packet queued beyond MaxLen")
	}
	q.mu.Lock()
	stalled := q.stalled()
	q.mu.Unlock()
	if stalled {
		t.Fatal("queue marked stalled although its writer was not writing")
	}
}

func TestNoWaitWhenWaitIsZero(t *testing.T) {
	var pool packet.Pool
	q := New(Options{MaxLen: 1, MaxBytes: 1 << 20})
	q.TryPush(newPacket(&pool, 1))
	start := time.Now()
	if q.Push(context.Background(), newPacket(&pool, 1)) {
		t.Fatal("packet queued beyond MaxLen")
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("waited %v with Wait 0", waited)
	}
}

// Close wakes a waiting producer and makes later pushes fail; it hands back
// what was queued.
func TestCloseWakesWaiters(t *testing.T) {
	var pool packet.Pool
	q := New(Options{MaxLen: 1, MaxBytes: 1 << 20, Wait: time.Hour, Holdoff: time.Hour})
	q.TryPush(newPacket(&pool, 1))
	res := make(chan bool)
	go func() { res <- q.Push(context.Background(), newPacket(&pool, 1)) }()
	// Close only once the producer waits for room, so that only Close can
	// end its wait (an hour long).
	for deadline := time.Now().Add(5 * time.Second); ; {
		q.mu.Lock()
		waiting := q.space != nil
		q.mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the producer never waited for room in a full queue")
		}
		time.Sleep(time.Millisecond)
	}
	if left := q.Close(); len(left) != 1 {
		t.Fatalf("Close returned %d packets, want 1", len(left))
	}
	select {
	case ok := <-res:
		if ok {
			t.Fatal("push into a closed queue succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the waiting producer")
	}
	if q.TryPush(newPacket(&pool, 1)) {
		t.Fatal("TryPush into a closed queue succeeded")
	}
}

// The byte limit counts buffer capacity, and a batch is bounded in bytes
// but always holds at least one packet.
func TestBytesAndBatches(t *testing.T) {
	var pool packet.Pool
	small := newPacket(&pool, 100)
	q := New(Options{MaxLen: 100, MaxBytes: 3 * cap(small.Data)})
	for range 3 {
		if !q.TryPush(newPacket(&pool, 100)) {
			t.Fatal("refused within the byte limit")
		}
	}
	if q.TryPush(small) {
		t.Fatal("queued beyond the byte limit")
	}
	b := q.Take(nil, 100, 150)
	if len(b) != 1 {
		t.Fatalf("batch of %d packets for 150 bytes of 100-byte packets, want 1", len(b))
	}
	if q.TryPush(small) {
		t.Fatal("taken-but-unreleased capacity was freed early")
	}
	q.Release()
	if got, want := q.Bytes(), int64(2*cap(small.Data)); got != want {
		t.Fatalf("after Release the queue holds %d bytes, want %d (what was not taken)", got, want)
	}
	if !q.TryPush(small) {
		t.Fatal("released capacity not reusable")
	}
	b = q.Take(b[:0], 2, 1<<20)
	if len(b) != 2 || q.Len() != 1 {
		t.Fatalf("Take(maxItems 2) took %d and left %d", len(b), q.Len())
	}
}

func TestContextEndsWait(t *testing.T) {
	var pool packet.Pool
	q := New(Options{MaxLen: 1, MaxBytes: 1 << 20, Wait: time.Hour, Holdoff: time.Hour})
	q.TryPush(newPacket(&pool, 1))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	res := make(chan bool, 1)
	go func() { res <- q.Push(ctx, newPacket(&pool, 1)) }()
	select {
	case ok := <-res:
		if ok {
			t.Fatal("packet queued beyond MaxLen")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the end of ctx did not end the wait for room")
	}
}
