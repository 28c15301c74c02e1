package bind

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
)

// demux wraps a ReceiveFunc of the inner bind so that the device sees only
// WireGuard packets. Each other packet is handed to the handler and its size set
// to zero, in place.
//
// Why zero sizes instead of compacting the batch: wireguard-go's
// RoutineReceiveIncoming reads packet i from its own buffer array at index i
// (bufsArrs[i][:sizes[i]]), not from packets[i], so moving slice headers would
// make it decrypt the wrong buffer, and moving bytes would cost a copy per
// packet. The conn.ReceiveFunc contract allows zero sizes ("callers should ignore
// them"), StdNetBind itself returns them for empty datagrams, and the device
// skips anything shorter than a keepalive.
//
// A batch that was entirely diverted is returned as it is (n elements, all of
// size zero) rather than receiving again: the device treats it as a no-op, and
// returning keeps Close simple, because the next call sees the closed socket.
func (b *Bind) demux(inner conn.ReceiveFunc) conn.ReceiveFunc {
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := inner(packets, sizes, eps)
		if err != nil {
			return n, err
		}
		// Loaded after the batch was read, never before: a batch read
		// after a NextEpoch must not be stamped with the epoch before it
		// (its messages would seem to have arrived before the read).
		epoch := b.epoch.Load()
		// Count direct traffic once per run of one source and session:
		// batches are mostly from one peer, so this is one map lookup per
		// batch, not per packet.
		var run struct {
			from netip.AddrPort
			idx  uint32
			n    uint64
		}
		for i := 0; i < n; i++ {
			if sizes[i] == 0 {
				continue
			}
			pkt := packets[i][:sizes[i]]
			if IsWireGuard(pkt) {
				idx, ok := receiverIndex(pkt)
				if !ok {
					continue
				}
				from := endpointAddr(eps[i])
				if run.n > 0 && (from != run.from || idx != run.idx) {
					b.noteRecv(run.from, run.idx, run.n, epoch)
					run.n = 0
				}
				run.from, run.idx = from, idx
				run.n++
				continue
			}
			if h := b.handler.Load(); h != nil {
				(*h)(pkt, endpointAddr(eps[i]))
			}
			sizes[i] = 0
		}
		if run.n > 0 {
			b.noteRecv(run.from, run.idx, run.n, epoch)
		}
		return n, nil
	}
}

// endpointAddr returns the remote address of an endpoint made by the inner
// bind. StdNetBind's endpoints carry it as a value, which avoids an allocation
// per packet; the fallback only exists so that a foreign endpoint type cannot
// panic here.
func endpointAddr(ep conn.Endpoint) netip.AddrPort {
	if se, ok := ep.(*conn.StdNetEndpoint); ok {
		return se.AddrPort
	}
	if ep == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(ep.DstToString())
	return ap
}
