package node

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/vocab"
	"github.com/wirelace/wirelace/daemon/bind"
	"github.com/wirelace/wirelace/daemon/mesh"
	"github.com/wirelace/wirelace/daemon/nat"
	"github.com/wirelace/wirelace/daemon/path"
	"github.com/wirelace/wirelace/daemon/probe"
	"github.com/wirelace/wirelace/internal/netipx"
	"github.com/wirelace/wirelace/netconf"
)

// Timing of the path loop.
//
// The loop's work grows with the active peers only (those with traffic, see
// path.IdleTimeout), not with the mesh: it ticks the machines in its loop
// set, which an idle peer leaves once its machine needs no more ticks, and
// rejoins on traffic (at once for a packet through the relay, within
// idleScan for one sent or received directly) or on a probe. What remains
// per idle peer is one read of its Bind counters per idleScan.
const (
	// pathTick bounds how long the path loop sleeps between looking at the
	// peers' state machines; each machine also says when it next needs a
	// tick.
	pathTick = 250 * time.Millisecond
	// idleScan is how often the Bind's counters of the peers out of the
	// loop are compared with their last values, to wake those with direct
	// traffic. Such a peer's packets go through the relay meanwhile (see
	// path's standby), so this only bounds how soon its direct path is
	// checked again; a read is a lock and a few atomic loads (about 0.1 µs:
	// 1000 idle peers cost 0.4 ms a second).
	idleScan = pathTick
	// counterPoll is the least time between two reads of the device's
	// receive counters, which confirm direct paths by authenticated traffic
	// (see observeRecv). They are read only while an active peer has direct
	// traffic they could confirm. Half of path.SuspectAfter, so a busy path
	// is confirmed twice within it and needs no liveness pings, while a cut
	// is noticed within SuspectAfter of the last read before it (a read
	// costs tens of microseconds with a few peers; counterShare bounds it
	// with many).
	counterPoll = path.SuspectAfter / 2
	// pollsTooSlow: reads spaced further apart than this (for their cost,
	// see counterShare) confirm too late to spare liveness pings, so they
	// are not made for that; pongs confirm. Any age of the read before is
	// sound (a proof is dated at the first message after it, see
	// observeRecv): this is only about what the reads are worth. Longer
	// than counterPoll, so that reads spaced out by a moderate cost (up to
	// 5 ms each) still confirm.
	pollsTooSlow = 500 * time.Millisecond
	// counterShare is the most of one core the counter reads may take. A read
	// lists every peer of the device over UAPI (13-28 ms with 1000 peers,
	// measured with wireguard-go and wgctrl), while a ping costs this node a
	// few microseconds: reads are spaced so that they stay within the share,
	// and when that leaves them further apart than pollsTooSlow (more than
	// about 300 peers), traffic is only a hint and pongs confirm, as without
	// a device, with one read per counterRecheck to see whether reads became
	// cheaper.
	counterShare   = 0.01
	counterRecheck = time.Minute
)

// peerCounters reads the WireGuard device's peers with their counters;
// *device.Device implements it. Only the receive byte count is used: the
// device counts only what authenticated, which no spoofer can make grow.
type peerCounters interface {
	Peers() ([]wgtypes.Peer, error)
}

// pathBind is what the path manager uses of the Bind; *bind.Bind implements
// it. An interface so that tests can count what the path loop touches.
type pathBind interface {
	Activity(key wgtypes.Key) bind.Activity
	NextEpoch() uint64
	ArrivedSince(epoch uint64) bool
	SetRoute(key wgtypes.Key, r bind.Route) error
	SendTo(pkt []byte, to netip.AddrPort) error
	PeerEndpoint(key wgtypes.Key) netip.AddrPort
	RemovePeer(key wgtypes.Key)
	DeliverRelayed(src wgtypes.Key, pkt []byte)
	RelayCannotReach(key wgtypes.Key)
}

// paths runs the per-peer path state machines (daemon/path) and does their
// I/O: probes on the WireGuard socket, CallMeMaybe through the relays, and
// the resulting route of each peer in the Bind.
//
// Probes are opened on a goroutine of their own (drainProbes), fed by a
// rate-limited queue, never on the Bind's receive goroutine; no probe is
// sealed or opened under mu.
type paths struct {
	log     *slog.Logger
	bind    pathBind
	relays  *relaySet
	metrics *metrics
	keys    *probe.Keyring // this node's control key and the members'
	stun    *nat.Client
	probes  *probeQueue
	// now is the clock (time.Now; tests set another before running).
	now func() time.Time
	// readCost is what a read of the device's counters that started at
	// start cost (time.Since; tests set another).
	readCost func(start time.Time) time.Duration

	mu       sync.Mutex
	peers    map[wgtypes.Key]*peerPath // by WireGuard key
	byCtl    map[wgtypes.Key]*peerPath // by control public key
	localNAT vocab.NATType
	ownCands []netip.AddrPort
	// routed is every prefix routed into the mesh: a probe or packet
	// "from" one of them came through the tunnel, and is no direct path.
	routed []netip.Prefix
	kick   chan struct{}
	// dev gives the device's receive counters; nil until setDevice, and
	// then traffic is never more than a hint.
	dev      peerCounters
	lastPoll time.Time
	// lastEpoch is the Bind's epoch the last read began (see
	// bind.Arrival).
	lastEpoch uint64
	// pollCost is what a read costs: the lesser of the last two, so that
	// one read slowed by a pause does not stop them.
	pollCost time.Duration
	lastCost time.Duration // the last read's, zero before the first
	// needPoll: an active peer had traffic a read could confirm at the
	// last step. (So has one the Bind saw a message for since the last
	// read: see pollCounters.)
	needPoll bool

	// loop is the peers the path loop ticks (see pathTick); the others are
	// idle and settled, and only scanned (idleScan).
	loop     map[wgtypes.Key]*peerPath
	lastScan time.Time
	relayUp  bool // a relay was connected at the last step
	// lastLostCheck is when lostHandshakes last read the device.
	lastLostCheck time.Time

	// byWG is peers, for handleRelayed, which runs on a relay's receive
	// goroutine and must not wait for mu: replaced, never changed, by
	// update. woken is the idle peers it saw traffic for.
	byWG    atomic.Pointer[map[wgtypes.Key]*peerPath]
	wokenMu sync.Mutex
	woken   []*peerPath
}

type peerPath struct {
	name     string
	wg       wgtypes.Key
	ctl      wgtypes.Key
	nat      vocab.NATType
	first    netip.AddrPort // first published candidate: a best guess while nothing is confirmed
	sm       *path.Peer
	route    bind.Route
	path     vocab.Path
	lastSend time.Time     // last direct send reported to sm
	act      bind.Activity // the Bind's counters at the last look
	hinted   uint64        // act.Recv at the last OnDirectHint
	seen     evidence      // traffic at the last counter poll
	// idle: out of the loop; handleRelayed puts it back (and clears this).
	idle atomic.Bool
	// directOnly: route has a direct address and not the relay; read by
	// handleRelayed without mu.
	directOnly atomic.Bool
	// joined is when the peer was added (see youngPeer).
	joined time.Time
}

// evidence is what was known of a peer's received traffic at one poll.
type evidence struct {
	act   bind.Activity
	rx    uint64 // the device's receive bytes
	rxOK  bool   // rx was read
	epoch uint64 // the Bind's epoch begun just before the read (bind.Arrival)
}

// newPaths returns the path manager; its relays, if any, are set before it
// runs, and the device (setDevice) once it is open.
func newPaths(b *bind.Bind, control wgtypes.Key, m *metrics, log *slog.Logger) *paths {
	p := &paths{
		log:      log,
		metrics:  m,
		bind:     b,
		peers:    map[wgtypes.Key]*peerPath{},
		byCtl:    map[wgtypes.Key]*peerPath{},
		loop:     map[wgtypes.Key]*peerPath{},
		kick:     make(chan struct{}, 1),
		now:      time.Now,
		readCost: time.Since,
	}
	clock := func() time.Time { return p.now() }
	p.keys = probe.NewKeyring(control, clock)
	p.probes = newProbeQueue(clock)
	p.probes.stats.register(m.reg)
	p.stun = nat.NewClient(b, log)
	return p
}

// setDevice gives the path manager the device's receive counters, with
// which authenticated traffic confirms direct paths (without them only
// pongs do, and busy paths are pinged more).
func (p *paths) setDevice(dev peerCounters) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dev = dev
}

// handle is the Bind's handler for non-WireGuard packets: STUN answers and
// path probes. It runs on the receive goroutine, so it only does quick
// work: a probe is rate-limited and queued for drainProbes.
func (p *paths) handle(pkt []byte, from netip.AddrPort) {
	switch {
	case nat.IsSTUN(pkt):
		p.stun.HandlePacket(pkt, from)
	case probe.IsProbe(pkt):
		p.probes.push(pkt, from, false, wgtypes.Key{})
	}
}

// handleRelayed is the relays' receive function: WireGuard packets go to the
// device, probes (CallMeMaybe) to the probe queue. src is the sender's
// WireGuard key, as the relay authenticated it. A WireGuard packet from an
// idle peer wakes it at once: the first one back after a pause is often
// the answer to a handshake this node sent through the relay, which the
// Bind's counters do not show. One from a peer we reach directly only
// kicks the loop: the peer doubts that path.
func (p *paths) handleRelayed(src wgtypes.Key, pkt []byte) {
	if probe.IsProbe(pkt) {
		p.probes.push(pkt, netip.AddrPort{}, true, src)
		return
	}
	p.bind.DeliverRelayed(src, pkt)
	if m := p.byWG.Load(); m != nil && bind.IsWireGuard(pkt) {
		pp := (*m)[src]
		switch {
		case pp == nil:
		case pp.idle.CompareAndSwap(true, false):
			p.wokenMu.Lock()
			p.woken = append(p.woken, pp)
			p.wokenMu.Unlock()
			p.wake()
		case pp.directOnly.CompareAndSwap(true, false):
			// The peer sends through the relay while we send directly
			// only: it doubts the path, and the next step should know
			// now (path.Peer.OnRelayRecv), not at its next tick. Once per
			// burst: the step re-arms this when the relay falls quiet.
			p.wake()
		}
	}
}

// drainProbes handles queued probes until ctx ends.
func (p *paths) drainProbes(ctx context.Context) {
	var q queuedProbe // one copy for the life of the loop, not one per probe
	for {
		select {
		case <-ctx.Done():
			return
		case q = <-p.probes.ch:
		}
		p.handleProbe(q.buf[:q.n], q.from, q.viaRelay, q.relaySrc)
	}
}

// tunnelled reports whether from lies in a prefix routed into the mesh:
// a packet from there came through the tunnel itself, and a "path" to it
// would send WireGuard into the tunnel it carries.
func (p *paths) tunnelled(from netip.AddrPort) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return inAny(p.routed, from.Addr())
}

// inAny reports whether a lies in one of ps.
func inAny(ps []netip.Prefix, a netip.Addr) bool { return containsAddr(ps, a.Unmap()) }

// handleProbe opens a probe that came directly from `from` or, viaRelay,
// through the relay from the node with WireGuard key relaySrc, and hands
// it to the peer's machine.
func (p *paths) handleProbe(pkt []byte, from netip.AddrPort, viaRelay bool, relaySrc wgtypes.Key) {
	st := &p.probes.stats
	if !viaRelay && p.tunnelled(from) {
		st.tunnelled.Add(1)
		p.log.Debug("dropped probe that came through the mesh", "from", from)
		return
	}
	if viaRelay && !p.relayedBySender(pkt, relaySrc) {
		// The relay vouches for the session a packet came from, and the box
		// for who sealed it: they must be the same node, or a node could
		// relay another's captured CallMeMaybe to steer us. Checked before
		// opening, so such a packet costs no cryptography and does not
		// use up the genuine one's nonce.
		st.wrongRelay.Add(1)
		if p.log.Enabled(context.Background(), slog.LevelDebug) {
			claimed, _ := probe.Sender(pkt)
			p.log.Debug("dropped relayed probe claiming another node as sender", "peer", p.nameOf(claimed), "relay_source", relaySrc)
		}
		return
	}
	m, sender, err := p.keys.Open(pkt)
	if err != nil {
		switch {
		case errors.Is(err, probe.ErrStale):
			st.stale.Add(1)
		case errors.Is(err, probe.ErrReplay):
			st.replayed.Add(1)
		default:
			st.invalid.Add(1)
		}
		if p.log.Enabled(context.Background(), slog.LevelDebug) {
			p.log.Debug("dropped probe", "peer", p.nameOf(sender), "from", from, "via_relay", viaRelay, "err", err)
		}
		return
	}
	now := p.now()
	p.mu.Lock()
	pp := p.byCtl[sender]
	if pp == nil {
		p.mu.Unlock()
		return
	}
	name, ctl := pp.name, pp.ctl
	if viaRelay && pp.wg != relaySrc { // membership changed since the check
		p.mu.Unlock()
		st.wrongRelay.Add(1)
		return
	}
	ok := true
	dev := p.dev
	switch {
	case m.Kind == probe.Handshake && viaRelay:
		// Handled below, outside mu: WireGuard sends the initiation.
	case m.Kind == probe.Ping && !viaRelay:
		// A ping proves the peer can reach us from that address (a new NAT
		// mapping after a rebind, say): the machine tries it back.
		pp.sm.OnPing(from, now)
	case m.Kind == probe.Pong && !viaRelay:
		pp.sm.OnPong(from, m.TxID, now)
	case m.Kind == probe.CallMeMaybe:
		pp.sm.OnCallMeMaybe(m.Candidates, now)
	default:
		ok = false // pings and pongs mean nothing through the relay
	}
	p.join(pp) // ticked at once, idle or not: what it queued goes out
	p.mu.Unlock()
	if !ok {
		return
	}
	switch m.Kind {
	case probe.Ping:
		reply, err := p.keys.Seal(probe.Message{Kind: probe.Pong, TxID: m.TxID, Observed: from}, ctl)
		if err == nil {
			err = p.bind.SendTo(reply, from)
		}
		if err != nil {
			p.log.Debug("pong not sent", "peer", name, "to", from, "err", err)
		}
	case probe.Pong:
		p.metrics.pongs.Inc()
	case probe.Handshake:
		if hs, ok := dev.(handshakes); ok {
			start, how := hs.StartHandshake, "start"
			if restartsOnRequest(p.keys.PublicKey(), ctl, p.bind.Activity(pp.wg).Handshake, now) {
				start, how = hs.RestartHandshake, "restart"
			}
			if err := start(pp.wg); err != nil {
				p.log.Debug("handshake not started", "peer", name, "err", err)
			} else {
				p.log.Debug("handshake requested by peer", "peer", name, "action", how)
			}
		}
	}
	p.wake()
}

// relayedBySender reports whether the probe pkt, relayed from the session
// of the node with WireGuard key relaySrc, claims to be sealed by that same
// node's control key.
func (p *paths) relayedBySender(pkt []byte, relaySrc wgtypes.Key) bool {
	claimed, ok := probe.Sender(pkt)
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pp := p.byCtl[claimed]
	return pp != nil && pp.wg == relaySrc
}

// nameOf is the name of the peer with control key ctl, or "" for none.
func (p *paths) nameOf(ctl wgtypes.Key) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pp := p.byCtl[ctl]; pp != nil {
		return pp.name
	}
	return ""
}

// relayCannotReach is told by a relay client that the relay has no session
// for dst: what this node last sent dst through it was dropped, a first
// handshake included (see lostHandshakes).
func (p *paths) relayCannotReach(dst wgtypes.Key) {
	p.log.Debug("relay cannot reach peer", "key", dst)
	p.bind.RelayCannotReach(dst)
}

// relayConnected is told by a relay client that its session came up: the
// next step looks for handshakes lost meanwhile at once (lostCheckDue),
// not a pathTick later.
func (p *paths) relayConnected() { p.wake() }

func (p *paths) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// setLocal records this node's NAT type and candidates (after STUN).
func (p *paths) setLocal(t vocab.NATType, cands []netip.AddrPort) {
	p.mu.Lock()
	p.localNAT = t
	p.ownCands = cands
	p.mu.Unlock()
}

// update brings the set of peers in line with the topology and sets the
// virtual endpoint each peer's WireGuard configuration must carry. own are
// this node's subnets, to recognise peers on the same network.
func (p *paths) update(top mesh.Topology, routed, own []netip.Prefix) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routed = routed
	seen := map[wgtypes.Key]bool{}
	for i := range top.Peers {
		n := &top.Peers[i]
		seen[n.PublicKey] = true
		pp := p.peers[n.PublicKey]
		if pp == nil {
			pp = &peerPath{name: n.Name, wg: n.PublicKey, sm: path.NewPeer(n.Name, now), joined: now}
			p.peers[n.PublicKey] = pp
			p.join(pp) // new peers start active
		}
		if pp.ctl != n.ControlKey {
			delete(p.byCtl, pp.ctl)
			pp.ctl = n.ControlKey
			p.byCtl[pp.ctl] = pp
		}
		pp.nat = n.NATType
		var cands []path.Candidate
		for j, ep := range n.Endpoints {
			cands = append(cands, path.Candidate{Addr: ep, Kind: n.EndpointKinds[j]})
		}
		pp.first = netip.AddrPort{}
		if len(n.Endpoints) > 0 {
			pp.first = n.Endpoints[0]
		}
		pp.sm.SetCandidates(path.MarkSameLAN(cands, own), p.localNAT, n.NATType, now)
		// The Bind learns of the peer (its virtual endpoint, which
		// applyPeers configures in WireGuard) and gets a route before
		// WireGuard does: its first handshake must not go nowhere.
		p.bind.PeerEndpoint(n.PublicKey)
		p.applyRoute(pp, now)
	}
	for k, pp := range p.peers {
		if !seen[k] {
			delete(p.peers, k)
			delete(p.byCtl, pp.ctl)
			delete(p.loop, k)
			p.bind.RemovePeer(k)
		}
	}
	byWG := make(map[wgtypes.Key]*peerPath, len(p.peers))
	for k, pp := range p.peers {
		byWG[k] = pp
	}
	p.byWG.Store(&byWG)
	members := make([]wgtypes.Key, 0, len(p.byCtl))
	for ctl := range p.byCtl {
		members = append(members, ctl)
	}
	p.keys.SetMembers(members)
	p.wake()
}

// run drives the state machines, and handles probes, until ctx ends.
func (p *paths) run(ctx context.Context) {
	go p.drainProbes(ctx)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
		now := p.now()
		next := p.step(now)
		wait := min(max(next.Sub(now), 10*time.Millisecond), pathTick)
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// outgoing is a probe to seal and send once mu is released.
type outgoing struct {
	peer string
	ctl  wgtypes.Key
	msg  probe.Message
	to   netip.AddrPort // direct; invalid: through the relay to wg
	wg   wgtypes.Key
}

// step ticks the peers in the loop, sends what their machines ask for and
// applies their routes; it wakes idle peers that have traffic. It returns
// when it next needs to run.
func (p *paths) step(now time.Time) time.Time {
	next := now.Add(pathTick)
	devPeers, epoch := p.pollCounters(now)
	rx := receiveBytes(devPeers)
	var out []outgoing
	relayUp := p.relays != nil && p.relays.Connected()

	p.mu.Lock()
	relayCameUp := relayUp && !p.relayUp
	p.relayUp = relayUp
	dev := p.dev
	p.wakeRelayed()
	if now.Sub(p.lastScan) >= idleScan || now.Before(p.lastScan) {
		p.lastScan = now
		p.scanIdle()
	}
	p.needPoll = false
	young := false // a peer in the loop is new, and a relay can carry asks
	for _, pp := range p.loop {
		// Traffic keeps the peer active (or wakes it). Our own direct sends
		// with nothing confirming the path make the machine check it at
		// once; direct receives confirm it only if the device
		// authenticated them (observeRecv).
		a := p.bind.Activity(pp.wg)
		prev := pp.act
		pp.act = a
		if a.LastSend.After(pp.lastSend) {
			pp.sm.OnDirectSend(a.LastSend)
			pp.lastSend = a.LastSend
		}
		switch {
		case a.Relayed != prev.Relayed:
			pp.sm.OnRelayRecv(now)
		case a.Recv != prev.Recv:
			pp.sm.OnActivity(now)
		}
		if a.Relayed == prev.Relayed {
			pp.directOnly.Store(pp.route.Direct.IsValid() && !pp.route.Relay)
		}
		if p.observeRecv(pp, a, rx, epoch, now) {
			p.needPoll = true
		}
		acts := pp.sm.Tick(now)
		for _, ping := range acts.Pings {
			out = append(out, outgoing{peer: pp.name, ctl: pp.ctl, to: ping.To, msg: probe.Message{Kind: probe.Ping, TxID: ping.TxID}})
		}
		if acts.CallMeMaybe && relayUp && len(p.ownCands) > 0 {
			out = append(out, outgoing{peer: pp.name, ctl: pp.ctl, wg: pp.wg, msg: probe.Message{Kind: probe.CallMeMaybe, Candidates: p.ownCands}})
		}
		p.applyRoute(pp, now)
		young = young || relayUp && now.Sub(pp.joined) < youngPeer
		if name, _ := pp.sm.Path(now); name != pp.path {
			if pp.path != "" {
				// The reason is formatted only here, on a change.
				st := pp.sm.Status(now)
				p.metrics.pathChanges.Inc()
				p.log.Info("path changed", "peer", pp.name, "from", pp.path, "to", st.Path, "addr", st.Addr, "reason", st.Reason)
			}
			pp.path = name
		}
		switch {
		case acts.Next.IsZero():
			// Idle, and its route settled: nothing until traffic or a probe.
			delete(p.loop, pp.wg)
			pp.idle.Store(true)
		case acts.Next.Before(next):
			next = acts.Next
		}
	}
	if p.needPoll {
		next = earliest(next, p.lastPoll.Add(p.pollEvery()))
	}
	if len(p.loop) < len(p.peers) {
		next = earliest(next, p.lastScan.Add(idleScan))
	}
	// Reads for lost handshakes share the counter reads' budget.
	lostEvery := max(lostCheckEvery, p.pollSpacing())
	checkLost := dev != nil && lostCheckDue(relayCameUp, young, p.lastLostCheck, now, lostEvery)
	if checkLost {
		p.lastLostCheck = now
	}
	if young {
		next = earliest(next, p.lastLostCheck.Add(lostEvery))
	}
	p.mu.Unlock()
	if checkLost {
		if devPeers == nil { // no counter read this step
			var err error
			if devPeers, err = p.readPeers(dev); err != nil {
				p.log.Debug("cannot read the device's peers", "err", err)
			}
		}
		out = append(out, p.lostHandshakes(devPeers, relayCameUp, now)...)
	}
	for _, o := range out {
		pkt, err := p.keys.Seal(o.msg, o.ctl)
		if err != nil {
			p.log.Debug("probe not sealed", "peer", o.peer, "kind", o.msg.Kind, "err", err)
			continue
		}
		if o.to.IsValid() {
			// Counted when sent, not when attempted: a socket error
			// (unreachable network, say) is no ping at all.
			if err = p.bind.SendTo(pkt, o.to); err == nil {
				p.metrics.pings.Inc()
			}
		} else {
			err = p.relays.SendPacket(o.wg, pkt)
		}
		if err != nil {
			p.log.Debug("probe not sent", "peer", o.peer, "kind", o.msg.Kind, "to", o.to, "err", err)
		}
	}
	if limited, full, ok := p.probes.dropsToReport(now); ok {
		p.log.Warn("dropping path probes: a flood, or peers probing too fast", "rate_limited_total", limited, "queue_full_total", full)
	}
	return next
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// join puts pp in the loop, to be ticked at the next step. Callers hold
// p.mu.
func (p *paths) join(pp *peerPath) {
	p.loop[pp.wg] = pp
	pp.idle.Store(false)
}

// wakeRelayed puts the idle peers handleRelayed saw traffic for back in the
// loop. Callers hold p.mu.
func (p *paths) wakeRelayed() {
	p.wokenMu.Lock()
	woken := p.woken
	p.woken = nil
	p.wokenMu.Unlock()
	for _, pp := range woken {
		if p.peers[pp.wg] == pp {
			p.join(pp)
		}
	}
}

// scanIdle puts the idle peers whose Bind counters changed since they left
// the loop back in it: WireGuard sent to them or received from them
// directly. Callers hold p.mu.
func (p *paths) scanIdle() {
	if len(p.loop) == len(p.peers) {
		return
	}
	for k, pp := range p.peers {
		if _, in := p.loop[k]; in {
			continue
		}
		if a := p.bind.Activity(k); !sameActivity(a, pp.act) {
			p.join(pp)
		}
	}
}

func sameActivity(a, b bind.Activity) bool {
	return a.LastSend.Equal(b.LastSend) && a.Recv == b.Recv && a.RecvFrom == b.RecvFrom &&
		a.RecvSources == b.RecvSources && a.Relayed == b.Relayed
}

// pollEvery is the least time between two reads of the device's counters:
// counterPoll, or longer if reads are costly (see counterShare).
func (p *paths) pollEvery() time.Duration {
	if p.pollsOff() {
		return counterRecheck
	}
	return max(counterPoll, p.pollSpacing())
}

// pollSpacing is how far apart reads as costly as the last must be to
// stay within counterShare.
func (p *paths) pollSpacing() time.Duration {
	return time.Duration(float64(p.pollCost) / counterShare)
}

// pollsOff reports whether reads are too costly to come often enough to
// confirm anything (see counterShare).
func (p *paths) pollsOff() bool { return p.pollSpacing() > pollsTooSlow }

// pollCounters reads the device's peers (their counters) if pollEvery has
// passed since the last read and there is traffic a read could confirm:
// an active peer had some at the last step, or the Bind saw a message
// arrive for a peer since the last read. The latter is what confirms
// sparse traffic in time: the answer to a send, arrived since the last
// step, is proven by a read in this step, before the machine, seeing the
// send unconfirmed for path.SuspectAfter, pings (the loop sleeps up to
// pathTick, longer than SuspectAfter). epoch is the Bind's epoch it began
// just before the read, 0 if it did not read; peers is nil when there is
// no device or it could not be read.
func (p *paths) pollCounters(now time.Time) (peers []wgtypes.Peer, epoch uint64) {
	p.mu.Lock()
	dev := p.dev
	polled := dev != nil && (now.Sub(p.lastPoll) >= p.pollEvery() || now.Before(p.lastPoll)) &&
		(p.needPoll || p.bind.ArrivedSince(p.lastEpoch))
	if polled {
		p.lastPoll = now
		// Before the read: every message the next read can count that
		// this one did not arrives in the new epoch or later, at or after
		// the Bind's stamp (see observeRecv).
		epoch = p.bind.NextEpoch()
		p.lastEpoch = epoch
	}
	p.mu.Unlock()
	if !polled {
		return nil, 0
	}
	peers, err := p.readPeers(dev)
	if err != nil {
		p.log.Debug("cannot read the device's counters", "err", err)
		return nil, epoch
	}
	return peers, epoch
}

// readPeers reads the device's peers and notes what the read cost: the
// reads for counters and for lost handshakes share counterShare.
func (p *paths) readPeers(dev peerCounters) ([]wgtypes.Peer, error) {
	start := time.Now() // the real clock: this is the read's cost
	peers, err := dev.Peers()
	cost := p.readCost(start)
	p.mu.Lock()
	p.pollCost = cost
	if p.lastCost > 0 {
		p.pollCost = min(cost, p.lastCost)
	}
	p.lastCost = max(cost, 1)
	p.mu.Unlock()
	return peers, err
}

// receiveBytes is each peer's receive counter, nil without a read.
func receiveBytes(peers []wgtypes.Peer) map[wgtypes.Key]uint64 {
	if peers == nil {
		return nil
	}
	rx := make(map[wgtypes.Key]uint64, len(peers))
	for _, pe := range peers {
		rx[pe.PublicKey] = uint64(pe.ReceiveBytes)
	}
	return rx
}

// observeRecv tells the peer's machine about the WireGuard messages that
// arrived directly since the last poll. The Bind counts them before the
// device decrypts them, so by themselves they prove nothing: anyone can
// send packets of the right shape, from any source. They confirm the path
// (OnDirectRecv) only if, from the last poll to this one (epoch, nonzero
// when this step polled), the device's receive counter for the peer grew
// (it counts only what decrypted), nothing came for the peer through the
// relay (so what decrypted came directly), and every direct message naming
// the peer's sessions came from one source, the address we send to.
//
// The proof is dated at the first of those messages to arrive after the
// last poll began its epoch, as the Bind stamped it (bind.Arrival): every
// message the growth can come from arrived at or after that stamp, so the
// date is sound however long ago the last poll was. (Dating it at the last
// poll, as before, made traffic of a packet a second, whose polls are a
// second apart, prove nothing: its every send armed a liveness ping.) With
// no message between the two polls the growth is from ones the device
// still held at the last, and this poll is only a new baseline; so is one
// whose messages all came after it began, which it cannot have counted.
// Anything less is a hint to ping (OnDirectHint). Between polls,
// messages from the address we send to ask for a poll (the result), to
// confirm them; others are hints at once. So does a poll that found such
// messages: while they flow, reads follow each other counterPoll apart.
// Callers hold p.mu.
func (p *paths) observeRecv(pp *peerPath, a bind.Activity, rx map[wgtypes.Key]uint64, epoch uint64, now time.Time) (wantPoll bool) {
	polled := epoch != 0
	prev := pp.seen
	if polled {
		cur := evidence{act: a, epoch: epoch}
		cur.rx, cur.rxOK = rx[pp.wg]
		pp.seen = cur
	}
	from := netipx.UnmapAddrPort(a.RecvFrom)
	if a.Recv == prev.act.Recv || !from.IsValid() || inAny(p.routed, from.Addr()) {
		return false
	}
	clean := from == pp.route.Direct && a.Relayed == prev.act.Relayed &&
		a.RecvSources == prev.act.RecvSources && a.RecvFrom == prev.act.RecvFrom
	var hint bool
	if polled {
		cur := pp.seen
		first, stamped := a.FirstSince(prev.epoch, epoch)
		// The stamp's own counts cover the messages between the last poll's
		// epoch and its look at the Bind, which prev.act does not.
		clean = clean && (!stamped || first.Sources == a.RecvSources && first.Relayed == a.Relayed)
		switch {
		case clean && prev.rxOK && cur.rxOK && stamped && cur.rx > prev.rx:
			// Never later than now: the Bind's clock is the same, but a
			// proof from the future would outlive the path.
			pp.sm.OnDirectRecv(from, earliest(first.At, now))
		case clean && cur.rxOK && (!prev.rxOK || !stamped):
			// Only a new baseline: the next poll may confirm.
		default:
			// Mixed sources or relayed traffic, or the device did not count
			// them (spoofed, or not the peer's), or could not be read.
			hint = true
		}
		// Traffic is flowing: read again in counterPoll, not a step later,
		// so that the next proof comes before path.SuspectAfter.
		wantPoll = from == pp.route.Direct
	} else {
		wantPoll = from == pp.route.Direct && p.dev != nil
		// Without reads (no device, or reads too costly to confirm by
		// traffic: the poll asked for then only checks the cost, once per
		// counterRecheck), traffic is a hint and pings confirm.
		hint = !clean || p.dev == nil || p.pollsOff()
	}
	if hint && a.Recv != pp.hinted {
		pp.hinted = a.Recv
		pp.sm.OnDirectHint(from, now)
	}
	return wantPoll
}

// applyRoute gives the Bind the peer's route now. Whether a relay is
// connected is the Bind's to check at each send, so routes need no sweep
// when one comes or goes. Callers hold p.mu.
func (p *paths) applyRoute(pp *peerPath, now time.Time) {
	direct, viaRelay := pp.sm.Send(now)
	r := bind.Route{Direct: direct, Relay: viaRelay}
	if !r.Direct.IsValid() {
		// Nothing confirmed: while no relay carries the traffic, the best
		// guess rather than nowhere, so a peer on the same network is
		// reachable before its first pong (and WireGuard's first handshake
		// is not lost to a 5 s retry).
		r.Guess = pp.first
	}
	if r != pp.route {
		if err := p.bind.SetRoute(pp.wg, r); err != nil {
			// pp.route stays as it was, so the next step tries again.
			p.log.Warn("setting a peer's route failed; retrying", "peer", pp.name, "err", err)
			return
		}
		pp.route = r
		pp.directOnly.Store(r.Direct.IsValid() && !r.Relay)
	}
}

// status fills in the path of each peer.
func (p *paths) status(peers []netconf.PeerStatus) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range peers {
		k, err := wgtypes.ParseKey(peers[i].PublicKey)
		if err != nil {
			continue
		}
		pp, ok := p.peers[k]
		if !ok {
			continue
		}
		st := pp.sm.Status(now)
		peers[i].Path = string(st.Path)
		if st.Addr.IsValid() {
			peers[i].PathAddr = st.Addr.String()
		}
		peers[i].PathReason = st.Reason
		peers[i].NATType = string(pp.nat)
	}
}
