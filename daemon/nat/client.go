package nat

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/wirelace/wirelace/internal/netipx"
)

// Retransmission of one STUN transaction. RFC 5389 starts at 500 ms and gives
// up after 39.5 s; a node must publish its NAT type seconds after start-up,
// and every answer we wait for comes from a relay the node will talk to
// anyway, so the schedule is shorter: sends at 0, 200, 600 and 1400 ms.
const (
	// rtoInitial is the wait before the first retransmission: above the
	// round trip to a relay in the same region, so a healthy server is not
	// asked twice.
	rtoInitial = 200 * time.Millisecond
	// rtoMax caps the doubling of the wait between retransmissions.
	rtoMax = 800 * time.Millisecond
)

// transaction is one outstanding request.
type transaction struct {
	to netip.AddrPort
	// alsoFrom is a second address an answer may come from: the address a
	// CHANGE-REQUEST asks the server to answer from. Invalid otherwise.
	alsoFrom netip.AddrPort
	// replies has room for one reply, so HandlePacket never blocks;
	// answers to retransmissions beyond the first are dropped.
	replies chan reply
}

// Client classifies the NAT in front of one socket. Its methods are safe for
// concurrent use.
type Client struct {
	send Sender
	log  *slog.Logger

	mu  sync.Mutex
	txs map[txID]*transaction
	// contacted remembers when each STUN address was last sent to: such a
	// send opens the NAT to answers from that address for minutes, which
	// would make a later filtering test pass for the wrong reason.
	contacted map[netip.AddrPort]time.Time
}

// NewClient returns a client sending with s. log may be nil.
func NewClient(s Sender, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		send:      s,
		log:       log,
		txs:       make(map[txID]*transaction),
		contacted: make(map[netip.AddrPort]time.Time),
	}
}

// HandlePacket consumes a STUN response that answers an outstanding
// transaction of this client, from the address the request went to (or, for
// a CHANGE-REQUEST, the address the server was asked to answer from), and
// reports true. Anything else, including other STUN traffic, is left alone
// (false). It is called on the socket's receive path: it takes a short lock,
// decodes only messages that are ours, and never blocks. pkt is not retained.
func (c *Client) HandlePacket(pkt []byte, from netip.AddrPort) bool {
	if !IsSTUN(pkt) || !isBindingResponse(pkt) {
		return false
	}
	var id txID
	copy(id[:], pkt[txIDOffset:])
	from = netipx.UnmapAddrPort(from)

	c.mu.Lock()
	tx, ok := c.txs[id]
	c.mu.Unlock()
	if !ok || (from != tx.to && (!tx.alsoFrom.IsValid() || from != tx.alsoFrom)) {
		return false
	}

	r, err := parseReply(pkt, from)
	if err != nil {
		// Ours by transaction ID and source, so nobody else wants it;
		// a retransmission may still get a good answer.
		c.log.Debug("STUN: bad response", "err", err)
		return true
	}
	select {
	case tx.replies <- r:
	default: // an answer to a retransmission; the first one counts
	}
	return true
}

// transact sends a Binding request to to, retransmitting until an answer
// arrives, timeout passes or ctx ends. ok is false when nothing usable came
// back. err is set only when not a single request could be sent (the socket
// is closed, say): that is a local failure, not an observation about the NAT.
func (c *Client) transact(ctx context.Context, to netip.AddrPort, ch change, alsoFrom netip.AddrPort, timeout time.Duration) (r reply, ok bool, err error) {
	var id txID
	if _, err := rand.Read(id[:]); err != nil {
		return reply{}, false, fmt.Errorf("STUN transaction ID: %w", err)
	}
	pkt, err := bindingRequest(id, ch)
	if err != nil {
		return reply{}, false, err
	}
	tx := &transaction{to: to, alsoFrom: alsoFrom, replies: make(chan reply, 1)}
	c.mu.Lock()
	c.txs[id] = tx
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.txs, id)
		c.mu.Unlock()
	}()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	retry := time.NewTimer(0) // the first send is immediate
	defer retry.Stop()
	rto, sent := rtoInitial, 0
	var sendErr error
	for {
		select {
		case r := <-tx.replies:
			return r, true, nil
		case <-ctx.Done():
			return reply{}, false, fmt.Errorf("STUN request to %s: %w", to, ctx.Err())
		case <-deadline.C:
			if sent == 0 && sendErr != nil {
				return reply{}, false, fmt.Errorf("STUN request to %s: %w", to, sendErr)
			}
			return reply{}, false, nil
		case <-retry.C:
			// Noted before the send, so that a filtering test whose
			// answer this send might let in always sees it.
			c.noteContacted(to, time.Now())
			if err := c.send.SendTo(pkt, to); err != nil {
				sendErr = err
				c.log.Debug("STUN: send failed", "to", to.String(), "err", err)
			} else {
				sent++
			}
			retry.Reset(rto)
			rto = min(2*rto, rtoMax)
		}
	}
}

// noteContacted records a send to a.
func (c *Client) noteContacted(a netip.AddrPort, now time.Time) {
	c.mu.Lock()
	c.contacted[a] = now
	c.mu.Unlock()
}

// recentlyContacted reports whether the NAT may still hold a permission for
// answers from a: a send to a itself, or, when anyPort, to any port of its
// IP. Entries older than permissionMemory are forgotten here,
// which keeps the map as small as the set of STUN addresses in use.
func (c *Client) recentlyContacted(a netip.AddrPort, anyPort bool, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	found := false
	for k, t := range c.contacted {
		if now.Sub(t) > permissionMemory {
			delete(c.contacted, k)
			continue
		}
		if k == a || (anyPort && k.Addr() == a.Addr()) {
			found = true
		}
	}
	return found
}
