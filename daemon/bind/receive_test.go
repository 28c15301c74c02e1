package bind

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// fakeBatch is what a fake inner ReceiveFunc delivers: one entry per packet,
// nil meaning an empty slot (size 0) as StdNetBind can return.
type fakePacket struct {
	data []byte
	from netip.AddrPort
}

// fakeReceive returns a ReceiveFunc that copies batch into the caller's buffers,
// the way StdNetBind does.
func fakeReceive(batch []fakePacket) conn.ReceiveFunc {
	eps := make([]conn.StdNetEndpoint, len(batch))
	return func(packets [][]byte, sizes []int, out []conn.Endpoint) (int, error) {
		for i, p := range batch {
			sizes[i] = copy(packets[i], p.data)
			eps[i].AddrPort = p.from
			out[i] = &eps[i]
		}
		return len(batch), nil
	}
}

type seen struct {
	data []byte
	from netip.AddrPort
}

func newBuffers(n int) ([][]byte, []int, []conn.Endpoint) {
	packets := make([][]byte, n)
	for i := range packets {
		packets[i] = make([]byte, 2048)
	}
	return packets, make([]int, n), make([]conn.Endpoint, n)
}

func TestDemuxBatch(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:3478")
	c := netip.MustParseAddrPort("198.51.100.7:51820")
	batch := []fakePacket{
		{msg(4, 100), c},
		{stun(0x0101, 12), a},
		{msg(1, 148), c},
		{nil, c},
		{append([]byte("wlp1"), 9, 9, 9), c},
		{msg(4, 32), c},
	}

	b := New(nil)
	var got []seen
	b.SetHandler(func(pkt []byte, from netip.AddrPort) {
		got = append(got, seen{bytes.Clone(pkt), from})
	})
	recv := b.demux(fakeReceive(batch))

	packets, sizes, eps := newBuffers(len(batch))
	n, err := recv(packets, sizes, eps)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(batch) {
		t.Fatalf("n = %d, want %d (diverted slots are zeroed, not removed)", n, len(batch))
	}
	// WireGuard packets stay where they were, untouched; everything else is size 0.
	wantSizes := []int{100, 0, 148, 0, 0, 32}
	for i, want := range wantSizes {
		if sizes[i] != want {
			t.Errorf("sizes[%d] = %d, want %d", i, sizes[i], want)
		}
		if want > 0 && !bytes.Equal(packets[i][:sizes[i]], batch[i].data) {
			t.Errorf("packet %d changed", i)
		}
	}
	want := []seen{{batch[1].data, a}, {batch[4].data, c}}
	if len(got) != len(want) {
		t.Fatalf("handler got %d packets, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].data, want[i].data) || got[i].from != want[i].from {
			t.Errorf("handler packet %d = %x from %v, want %x from %v", i, got[i].data, got[i].from, want[i].data, want[i].from)
		}
	}
}

func TestDemuxAllDiverted(t *testing.T) {
	batch := []fakePacket{
		{stun(0x0001, 0), netip.MustParseAddrPort("192.0.2.1:3478")},
		{stun(0x0001, 0), netip.MustParseAddrPort("192.0.2.2:3478")},
	}
	b := New(nil)
	calls := 0
	b.SetHandler(func([]byte, netip.AddrPort) { calls++ })
	packets, sizes, eps := newBuffers(len(batch))
	n, err := b.demux(fakeReceive(batch))(packets, sizes, eps)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || sizes[0] != 0 || sizes[1] != 0 {
		t.Errorf("n = %d, sizes = %v; want 2 empty slots", n, sizes[:2])
	}
	if calls != 2 {
		t.Errorf("handler called %d times, want 2", calls)
	}
}

func TestDemuxNoHandlerDrops(t *testing.T) {
	batch := []fakePacket{{stun(0x0001, 0), netip.MustParseAddrPort("192.0.2.1:3478")}}
	b := New(nil)
	packets, sizes, eps := newBuffers(1)
	if _, err := b.demux(fakeReceive(batch))(packets, sizes, eps); err != nil {
		t.Fatal(err)
	}
	if sizes[0] != 0 {
		t.Errorf("sizes[0] = %d, want 0: a non-WireGuard packet must not reach the device", sizes[0])
	}
}

func TestDemuxAllocations(t *testing.T) {
	c := netip.MustParseAddrPort("198.51.100.7:51820")
	batch := make([]fakePacket, conn.IdealBatchSize)
	for i := range batch {
		batch[i] = fakePacket{msg(4, 1452), c}
		if i%16 == 0 {
			batch[i] = fakePacket{stun(0x0101, 12), c}
		}
	}
	b := New(nil)
	b.SetHandler(func([]byte, netip.AddrPort) {})
	recv := b.demux(fakeReceive(batch))
	packets, sizes, eps := newBuffers(len(batch))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := recv(packets, sizes, eps); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("demux allocates %v times per batch, want 0", allocs)
	}
}

// BenchmarkDemux measures a batch of one peer's transport data, counted
// for the peer by its session index.
func BenchmarkDemux(b *testing.B) {
	c := netip.MustParseAddrPort("198.51.100.7:51820")
	batch := make([]fakePacket, conn.IdealBatchSize)
	for i := range batch {
		batch[i] = fakePacket{withIndex(msg(4, 1452), 4, 7), c}
	}
	bd := New(nil)
	k, _ := wgtypes.GeneratePrivateKey()
	ep, _ := bd.ParseEndpoint(bd.PeerEndpoint(k.PublicKey()).String())
	bd.Send([][]byte{withIndex(msg(1, 148), 4, 7)}, ep) // the session
	if bd.Activity(k.PublicKey()).Recv != 0 {
		b.Fatal("counted before receiving")
	}
	inner := fakeReceive(batch)
	recv := bd.demux(inner)
	packets, sizes, eps := newBuffers(len(batch))
	b.Run("inner", func(b *testing.B) {
		for range b.N {
			inner(packets, sizes, eps)
		}
	})
	b.Run("demux", func(b *testing.B) {
		for range b.N {
			recv(packets, sizes, eps)
		}
	})
	if bd.Activity(k.PublicKey()).Recv == 0 {
		b.Fatal("the peer's traffic was not counted")
	}
}
