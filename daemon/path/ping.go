package path

import (
	"crypto/rand"
	"net/netip"
	"time"
)

type outstanding struct {
	to   netip.AddrPort
	sent time.Time
}

// ping adds a ping to c unless one went out within PingSpacing, and returns
// when the latest ping to c was sent.
func (p *Peer) ping(acts *Actions, c *cand, now time.Time) time.Time {
	if !c.lastPing.IsZero() && now.Sub(c.lastPing) < PingSpacing && !now.Before(c.lastPing) {
		return c.lastPing
	}
	var tx [12]byte
	rand.Read(tx[:]) // crypto/rand never fails
	if len(p.pings) >= maxOutstanding {
		var oldest [12]byte
		var ot time.Time
		for k, o := range p.pings {
			if ot.IsZero() || o.sent.Before(ot) {
				oldest, ot = k, o.sent
			}
		}
		delete(p.pings, oldest)
	}
	p.pings[tx] = outstanding{to: c.addr, sent: now}
	c.lastPing = now
	acts.Pings = append(acts.Pings, Ping{To: c.addr, TxID: tx})
	return now
}
