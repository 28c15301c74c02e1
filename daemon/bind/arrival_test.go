package bind

import (
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// arrivalBind is a Bind with one peer whose session is 7, a fake clock for
// the stamps, and a receive function that delivers one transport message
// for that session from `from` per call.
func arrivalBind(t *testing.T) (b *Bind, key wgtypes.Key, clock *time.Time, recvFrom func(from netip.AddrPort)) {
	t.Helper()
	b = New(nil)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock = &now
	b.SetClock(func() time.Time { return *clock })
	k, _ := wgtypes.GeneratePrivateKey()
	key = k.PublicKey()
	ep, err := b.ParseEndpoint(b.PeerEndpoint(key).String())
	if err != nil {
		t.Fatal(err)
	}
	b.Send([][]byte{withIndex(msg(1, 148), 4, 7)}, ep) // the session
	packets, sizes, eps := newBuffers(1)
	recvFrom = func(from netip.AddrPort) {
		t.Helper()
		if _, err := b.demux(fakeReceive([]fakePacket{{withIndex(msg(4, 96), 4, 7), from}}))(packets, sizes, eps); err != nil {
			t.Fatal(err)
		}
	}
	return b, key, clock, recvFrom
}

// The first message of each epoch is stamped, and only the first: the
// next read's growth is dated at it.
func TestArrivalStampsFirstOfEpoch(t *testing.T) {
	b, key, clock, recv := arrivalBind(t)
	peer := netip.MustParseAddrPort("198.51.100.7:51820")
	t1 := *clock

	if b.ArrivedSince(1) {
		t.Fatal("arrival reported before any message")
	}
	recv(peer)
	*clock = clock.Add(time.Second)
	recv(peer) // same epoch: not restamped
	a := b.Activity(key)
	if a.Arrivals[0].Epoch != 1 || !a.Arrivals[0].At.Equal(t1) || a.Arrivals[0].Sources != 1 {
		t.Fatalf("arrivals %+v, want the first message of epoch 1 at %v", a.Arrivals, t1)
	}
	if !b.ArrivedSince(1) || b.ArrivedSince(2) {
		t.Fatal("ArrivedSince does not follow the arrivals")
	}

	e := b.NextEpoch() // a read
	if b.ArrivedSince(e) {
		t.Fatal("arrival reported for an epoch without messages")
	}
	*clock = clock.Add(time.Second)
	t2 := *clock
	recv(peer)
	*clock = clock.Add(time.Second)
	recv(peer)
	a = b.Activity(key)
	if got, ok := a.FirstSince(e, e+1); !ok || !got.At.Equal(t2) || got.Epoch != e {
		t.Fatalf("FirstSince(%d) = %+v %v, want the first message after the read, at %v", e, got, ok, t2)
	}
	if !b.ArrivedSince(e) {
		t.Fatal("ArrivedSince missed the arrival")
	}
	// What came after a later read is not what that read's growth can
	// come from.
	if _, ok := a.FirstSince(e, e); ok {
		t.Fatal("an arrival counted before the epoch that holds it")
	}
}

// FirstSince tells only what Arrivals prove.
func TestFirstSince(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	cases := []struct {
		name      string
		arrivals  [2]Arrival
		epoch     uint64
		before    uint64
		wantOK    bool
		wantEpoch uint64
	}{
		{"none", [2]Arrival{}, 3, 4, false, 0},
		{"no epoch", [2]Arrival{{Epoch: 3, At: at(3)}}, 0, 4, false, 0},
		{"in the epoch", [2]Arrival{{Epoch: 3, At: at(3)}, {Epoch: 1, At: at(1)}}, 3, 4, true, 3},
		{"older slot is the epoch", [2]Arrival{{Epoch: 4, At: at(4)}, {Epoch: 3, At: at(3)}}, 3, 5, true, 3},
		{"first after an epoch without messages", [2]Arrival{{Epoch: 5, At: at(5)}, {Epoch: 2, At: at(2)}}, 3, 6, true, 5},
		{"only after the next read began", [2]Arrival{{Epoch: 4, At: at(4)}, {Epoch: 2, At: at(2)}}, 3, 4, false, 0},
		{"older slot after the epoch: evicted ones unknown", [2]Arrival{{Epoch: 6, At: at(6)}, {Epoch: 5, At: at(5)}}, 3, 7, false, 0},
		{"only before the epoch", [2]Arrival{{Epoch: 2, At: at(2)}, {Epoch: 1, At: at(1)}}, 3, 4, false, 0},
	}
	for _, c := range cases {
		got, ok := Activity{Arrivals: c.arrivals}.FirstSince(c.epoch, c.before)
		if ok != c.wantOK || ok && got.Epoch != c.wantEpoch {
			t.Errorf("%s: FirstSince(%d, %d) = %+v %v, want epoch %d %v", c.name, c.epoch, c.before, got, ok, c.wantEpoch, c.wantOK)
		}
	}
}

// A batch of the other socket, read before the newest epoch began but
// counted after it, keeps Arrivals newest first and is dated no later
// than the newest epoch's first message.
func TestArrivalFromAnEarlierEpochCountedLate(t *testing.T) {
	b, key, clock, _ := arrivalBind(t)
	peer := netip.MustParseAddrPort("198.51.100.7:51820")
	e1 := b.NextEpoch()
	e2 := b.NextEpoch()
	b.noteRecv(peer, 7, 1, e2)
	stamp := *clock
	*clock = clock.Add(time.Millisecond)
	b.noteRecv(peer, 7, 1, e1) // loaded its epoch before e2 began
	a := b.Activity(key)
	if a.Arrivals[0].Epoch != e2 || a.Arrivals[1].Epoch != e1 || a.Arrivals[1].At.After(stamp) {
		t.Fatalf("arrivals %+v", a.Arrivals)
	}
	if got, ok := a.FirstSince(e1, e2+1); !ok || got.Epoch != e1 {
		t.Fatalf("FirstSince(%d) = %+v %v", e1, got, ok)
	}
}

// The stamp costs the receive path no allocation.
func TestArrivalAllocations(t *testing.T) {
	b, _, _, _ := arrivalBind(t)
	batch := make([]fakePacket, conn.IdealBatchSize)
	for i := range batch {
		batch[i] = fakePacket{withIndex(msg(4, 1452), 4, 7), netip.MustParseAddrPort("198.51.100.7:51820")}
	}
	recv := b.demux(fakeReceive(batch))
	packets, sizes, eps := newBuffers(len(batch))
	allocs := testing.AllocsPerRun(100, func() {
		b.NextEpoch() // every batch the first of its epoch: the costly case
		if _, err := recv(packets, sizes, eps); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("demux allocates %v times per batch with stamps, want 0", allocs)
	}
}

// Before any message, no epoch has one, the first included.
func TestArrivedSinceNone(t *testing.T) {
	b := New(nil)
	if b.ArrivedSince(0) || b.ArrivedSince(1) {
		t.Fatal("arrival reported with none")
	}
}
