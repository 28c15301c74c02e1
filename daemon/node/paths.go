package node

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/bind"
	"github.com/wirelace/wirelace/daemon/mesh"
	"github.com/wirelace/wirelace/daemon/nat"
	"github.com/wirelace/wirelace/daemon/path"
	"github.com/wirelace/wirelace/daemon/probe"
	"github.com/wirelace/wirelace/netconf"
)

// Timing of the path loop.
const (
	// pathTick bounds how long the path loop sleeps between looking at the
	// peers' state machines; each machine also says when it next needs a
	// tick.
	pathTick = 250 * time.Millisecond
	// counterPoll is how often the device's receive counters are read, to
	// confirm direct paths by authenticated traffic (see observeRecv).
	// Reading them goes through the device's UAPI and lists every peer, so
	// not on every step; once per pathTick still confirms a busy path well
	// within path.SuspectAfter, so it needs no liveness pings.
	counterPoll = pathTick
)

// peerCounters reads the WireGuard device's peers with their counters;
// *device.Device implements it. Only the receive byte count is used: the
// device counts only what authenticated, which no spoofer can make grow.
type peerCounters interface {
	Peers() ([]wgtypes.Peer, error)
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
	bind    *bind.Bind
	relays  *relaySet
	metrics *metrics
	keys    *probe.Keyring // this node's control key and the members'
	stun    *nat.Client
	probes  *probeQueue
	// now is the clock (time.Now; tests set another before running).
	now func() time.Time

	mu       sync.Mutex
	peers    map[wgtypes.Key]*peerPath // by WireGuard key
	byCtl    map[wgtypes.Key]*peerPath // by control public key
	localNAT v1alpha1.NATType
	ownCands []netip.AddrPort
	// routed is every prefix routed into the mesh: a probe or packet
	// "from" one of them came through the tunnel, and is no direct path.
	routed []netip.Prefix
	kick   chan struct{}
	// dev gives the device's receive counters; nil until setDevice, and
	// then traffic is never more than a hint.
	dev      peerCounters
	lastPoll time.Time
}

type peerPath struct {
	name     string
	wg       wgtypes.Key
	ctl      wgtypes.Key
	nat      string
	first    netip.AddrPort // first published candidate: a best guess while nothing is confirmed
	sm       *path.Peer
	route    bind.Route
	path     string
	lastSend time.Time // last direct send reported to sm
	seen     evidence  // traffic at the last counter poll
}

// evidence is what was known of a peer's received traffic at one poll.
type evidence struct {
	act  bind.Activity
	rx   uint64 // the device's receive bytes
	rxOK bool   // rx was read
}

// newPaths returns the path manager; its relays, if any, are set before it
// runs, and the device (setDevice) once it is open.
func newPaths(b *bind.Bind, control wgtypes.Key, m *metrics, log *slog.Logger) *paths {
	p := &paths{
		log:     log,
		metrics: m,
		bind:    b,
		peers:   map[wgtypes.Key]*peerPath{},
		byCtl:   map[wgtypes.Key]*peerPath{},
		kick:    make(chan struct{}, 1),
		now:     time.Now,
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
// WireGuard key, as the relay authenticated it.
func (p *paths) handleRelayed(src wgtypes.Key, pkt []byte) {
	if probe.IsProbe(pkt) {
		p.probes.push(pkt, netip.AddrPort{}, true, src)
		return
	}
	p.bind.DeliverRelayed(src, pkt)
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
	switch {
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

func (p *paths) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// setLocal records this node's NAT type and candidates (after STUN).
func (p *paths) setLocal(t nat.Type, cands []netip.AddrPort) {
	p.mu.Lock()
	p.localNAT = t
	p.ownCands = cands
	p.mu.Unlock()
}

// update brings the set of peers in line with the topology and sets the
// virtual endpoint each peer's WireGuard configuration must carry. own are
// this node's subnets, to recognise peers on the same network.
func (p *paths) update(top mesh.Topology, own []netip.Prefix) {
	now := p.now()
	relayUp := p.relays != nil && p.relays.connected()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routed = top.Routes()
	seen := map[wgtypes.Key]bool{}
	for i := range top.Peers {
		n := &top.Peers[i]
		seen[n.PublicKey] = true
		pp := p.peers[n.PublicKey]
		if pp == nil {
			pp = &peerPath{name: n.Name, wg: n.PublicKey, sm: path.NewPeer(n.Name, now)}
			p.peers[n.PublicKey] = pp
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
		pp.sm.SetCandidates(path.MarkSameLAN(cands, own), p.localNAT, v1alpha1.NATType(n.NATType), now)
		n.WireGuardEndpoint = p.bind.PeerEndpoint(n.PublicKey)
		// A route before WireGuard learns of the peer: its first handshake
		// must not go nowhere.
		p.applyRoute(pp, now, relayUp)
	}
	for k, pp := range p.peers {
		if !seen[k] {
			delete(p.peers, k)
			delete(p.byCtl, pp.ctl)
			p.bind.RemovePeer(k)
		}
	}
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

// step ticks every peer, sends what the machines ask for and applies each
// peer's route. It returns when it next needs to run.
func (p *paths) step(now time.Time) time.Time {
	next := now.Add(pathTick)
	rx, polled := p.pollCounters(now)
	var out []outgoing
	relayUp := p.relays != nil && p.relays.connected()

	p.mu.Lock()
	for _, pp := range p.peers {
		// Our own direct sends with nothing confirming the path make the
		// machine check it at once; direct receives confirm it only if
		// the device authenticated them (observeRecv).
		a := p.bind.Activity(pp.wg)
		if a.LastSend.After(pp.lastSend) {
			pp.sm.OnDirectSend(a.LastSend)
			pp.lastSend = a.LastSend
		}
		if polled {
			p.observeRecv(pp, a, rx, now)
		}
		acts := pp.sm.Tick(now)
		if !acts.Next.IsZero() && acts.Next.Before(next) {
			next = acts.Next
		}
		for _, ping := range acts.Pings {
			out = append(out, outgoing{peer: pp.name, ctl: pp.ctl, to: ping.To, msg: probe.Message{Kind: probe.Ping, TxID: ping.TxID}})
		}
		if acts.CallMeMaybe && relayUp && len(p.ownCands) > 0 {
			out = append(out, outgoing{peer: pp.name, ctl: pp.ctl, wg: pp.wg, msg: probe.Message{Kind: probe.CallMeMaybe, Candidates: p.ownCands}})
		}
		p.applyRoute(pp, now, relayUp)
		if name, _ := pp.sm.Path(now); name != pp.path {
			if pp.path != "" {
				// The reason is formatted only here, on a change.
				st := pp.sm.Status(now)
				p.metrics.pathChanges.Inc()
				p.log.Info("path changed", "peer", pp.name, "from", pp.path, "to", st.Path, "addr", st.Addr, "reason", st.Reason)
			}
			pp.path = name
		}
	}
	p.mu.Unlock()

	for _, o := range out {
		pkt, err := p.keys.Seal(o.msg, o.ctl)
		if err != nil {
			p.log.Debug("probe not sealed", "peer", o.peer, "kind", o.msg.Kind, "err", err)
			continue
		}
		if o.to.IsValid() {
			p.metrics.pings.Inc()
			p.bind.SendTo(pkt, o.to)
		} else {
			p.relays.SendPacket(o.wg, pkt)
		}
	}
	if limited, full, ok := p.probes.dropsToReport(now); ok {
		p.log.Warn("dropping path probes: a flood, or peers probing too fast", "rate_limited_total", limited, "queue_full_total", full)
	}
	return next
}

// pollCounters reads the device's receive counters if counterPoll has
// passed since the last read. polled says whether it was time; rx is nil
// when there is no device or it could not be read.
func (p *paths) pollCounters(now time.Time) (rx map[wgtypes.Key]uint64, polled bool) {
	p.mu.Lock()
	polled = now.Sub(p.lastPoll) >= counterPoll || now.Before(p.lastPoll)
	if polled {
		p.lastPoll = now
	}
	dev := p.dev
	p.mu.Unlock()
	if !polled || dev == nil {
		return nil, polled
	}
	peers, err := dev.Peers()
	if err != nil {
		p.log.Debug("cannot read the device's counters", "err", err)
		return nil, true
	}
	rx = make(map[wgtypes.Key]uint64, len(peers))
	for _, pe := range peers {
		rx[pe.PublicKey] = uint64(pe.ReceiveBytes)
	}
	return rx, true
}

// observeRecv tells the peer's machine about the WireGuard messages that
// arrived directly since the last poll. The Bind counts them before the
// device decrypts them, so by themselves they prove nothing: anyone can
// send packets of the right shape, from any source. They confirm the path
// (OnDirectRecv) only if, over the same interval, the device's receive
// counter for the peer grew (it counts only what decrypted), nothing came
// for the peer through the relay (so what decrypted came directly), and
// every direct message naming the peer's sessions came from one source,
// the address we send to. Anything less is a hint to ping (OnDirectHint).
// Callers hold p.mu.
func (p *paths) observeRecv(pp *peerPath, a bind.Activity, rx map[wgtypes.Key]uint64, now time.Time) {
	prev := pp.seen
	cur := evidence{act: a}
	cur.rx, cur.rxOK = rx[pp.wg]
	pp.seen = cur
	from := netip.AddrPortFrom(a.RecvFrom.Addr().Unmap(), a.RecvFrom.Port())
	if a.Recv == prev.act.Recv || !from.IsValid() || inAny(p.routed, from.Addr()) {
		return
	}
	authentic := prev.rxOK && cur.rxOK && cur.rx > prev.rx &&
		a.Relayed == prev.act.Relayed &&
		a.RecvSources == prev.act.RecvSources && a.RecvFrom == prev.act.RecvFrom
	if authentic && from == pp.route.Direct {
		pp.sm.OnDirectRecv(from, now)
	} else {
		pp.sm.OnDirectHint(from, now)
	}
}

// applyRoute gives the Bind the peer's route now. Callers hold p.mu.
func (p *paths) applyRoute(pp *peerPath, now time.Time, relayUp bool) {
	direct, viaRelay := pp.sm.Send(now)
	r := bind.Route{Direct: direct, Relay: viaRelay && relayUp}
	if !r.Direct.IsValid() && !relayUp {
		// Nothing confirmed and no relay to carry the traffic: send to the
		// best guess rather than nowhere, so a peer on the same network is
		// reachable before its first pong (and WireGuard's first handshake
		// is not lost to a 5 s retry).
		r.Direct = pp.first
	}
	if r != pp.route {
		pp.route = r
		p.bind.SetRoute(pp.wg, r)
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
		peers[i].Path = st.Path
		if st.Addr.IsValid() {
			peers[i].PathAddr = st.Addr.String()
		}
		peers[i].PathReason = st.Reason
		peers[i].NATType = pp.nat
	}
}
