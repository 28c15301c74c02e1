package node

import (
	"context"
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

// pathTick bounds how long the path loop sleeps between looking at the
// peers' state machines; each machine also says when it next needs a tick.
const pathTick = 250 * time.Millisecond

// paths runs the per-peer path state machines (daemon/path) and does their
// I/O: probes on the WireGuard socket, CallMeMaybe through the relays, and
// the resulting route of each peer in the Bind.
type paths struct {
	log     *slog.Logger
	bind    *bind.Bind
	relays  *relaySet
	metrics *metrics
	control wgtypes.Key // this node's control private key
	stun    *nat.Client

	mu       sync.Mutex
	peers    map[wgtypes.Key]*peerPath // by WireGuard key
	byCtl    map[wgtypes.Key]*peerPath // by control public key
	localNAT v1alpha1.NATType
	ownCands []netip.AddrPort
	// routed is every prefix routed into the mesh: a probe or packet
	// "from" one of them came through the tunnel, and is no direct path.
	routed []netip.Prefix
	kick   chan struct{}
}

type peerPath struct {
	activity bind.Activity // last direct traffic reported to sm
	name     string
	wg       wgtypes.Key
	ctl      wgtypes.Key
	nat      string
	first    netip.AddrPort // first published candidate: a best guess while nothing is confirmed
	sm       *path.Peer
	route    bind.Route
	path     string
}

// newPaths returns the path manager; its relays, if any, are set before it
// runs.
func newPaths(b *bind.Bind, control wgtypes.Key, m *metrics, log *slog.Logger) *paths {
	p := &paths{
		log:     log,
		metrics: m,
		bind:    b,
		control: control,
		peers:   map[wgtypes.Key]*peerPath{},
		byCtl:   map[wgtypes.Key]*peerPath{},
		kick:    make(chan struct{}, 1),
	}
	p.stun = nat.NewClient(b, log)
	return p
}

// handle is the Bind's handler for non-WireGuard packets: STUN answers and
// path probes. It runs on the receive goroutine, so it only does quick work.
func (p *paths) handle(pkt []byte, from netip.AddrPort) {
	switch {
	case nat.IsSTUN(pkt):
		p.stun.HandlePacket(pkt, from)
	case probe.IsProbe(pkt):
		p.handleProbe(pkt, from, false)
	}
}

// handleRelayed is the relays' receive function: WireGuard packets go to the
// device, probes (CallMeMaybe) to the state machines.
func (p *paths) handleRelayed(src wgtypes.Key, pkt []byte) {
	if probe.IsProbe(pkt) {
		p.handleProbe(pkt, netip.AddrPort{}, true)
		return
	}
	p.bind.DeliverRelayed(src, pkt)
}

func (p *paths) known(ctl wgtypes.Key) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.byCtl[ctl]
	return ok
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

func (p *paths) handleProbe(pkt []byte, from netip.AddrPort, viaRelay bool) {
	if !viaRelay && p.tunnelled(from) {
		p.log.Debug("dropped probe that came through the mesh", "from", from)
		return
	}
	m, sender, err := probe.Open(pkt, p.control, p.known)
	if err != nil {
		p.log.Debug("dropped probe", "from", from, "err", err)
		return
	}
	now := time.Now()
	p.mu.Lock()
	pp := p.byCtl[sender]
	p.mu.Unlock()
	if pp == nil {
		return
	}
	switch m.Kind {
	case probe.Ping:
		if viaRelay {
			return
		}
		reply, err := probe.Seal(probe.Message{Kind: probe.Pong, TxID: m.TxID, Observed: from}, p.control, pp.ctl)
		if err == nil {
			p.bind.SendTo(reply, from)
		}
		// A ping proves the peer can reach us from that address (a new NAT
		// mapping after a rebind, say): the machine tries it back.
		p.mu.Lock()
		pp.sm.OnPing(from, now)
		p.mu.Unlock()
		p.wake()
	case probe.Pong:
		if viaRelay {
			return
		}
		p.metrics.pongs.Inc()
		p.mu.Lock()
		pp.sm.OnPong(from, m.TxID, now)
		p.mu.Unlock()
		p.wake()
	case probe.CallMeMaybe:
		p.mu.Lock()
		pp.sm.OnCallMeMaybe(m.Candidates, now)
		p.mu.Unlock()
		p.wake()
	}
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
	now := time.Now()
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
	p.wake()
}

// run drives the state machines until ctx ends.
func (p *paths) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
		next := p.step(time.Now())
		wait := min(max(time.Until(next), 10*time.Millisecond), pathTick)
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

type outgoing struct {
	to  netip.AddrPort
	pkt []byte
}

// step ticks every peer, sends what the machines ask for and applies each
// peer's route. It returns when it next needs to run.
func (p *paths) step(now time.Time) time.Time {
	next := now.Add(pathTick)
	var pings []outgoing
	type cmm struct {
		wg  wgtypes.Key
		pkt []byte
	}
	var calls []cmm
	relayUp := p.relays != nil && p.relays.connected()

	p.mu.Lock()
	for _, pp := range p.peers {
		// Direct traffic the Bind saw confirms the path (receive) or, with
		// nothing coming back, makes the machine check it at once (send).
		a := p.bind.Activity(pp.wg)
		if a.LastRecv.After(pp.activity.LastRecv) && a.RecvFrom.IsValid() && !inAny(p.routed, a.RecvFrom.Addr()) {
			pp.sm.OnDirectRecv(a.RecvFrom, a.LastRecv)
		}
		if a.LastSend.After(pp.activity.LastSend) {
			pp.sm.OnDirectSend(a.LastSend)
		}
		pp.activity = a
		acts := pp.sm.Tick(now)
		if !acts.Next.IsZero() && acts.Next.Before(next) {
			next = acts.Next
		}
		for _, ping := range acts.Pings {
			pkt, err := probe.Seal(probe.Message{Kind: probe.Ping, TxID: ping.TxID}, p.control, pp.ctl)
			if err == nil {
				pings = append(pings, outgoing{ping.To, pkt})
			}
		}
		if acts.CallMeMaybe && relayUp && len(p.ownCands) > 0 {
			pkt, err := probe.Seal(probe.Message{Kind: probe.CallMeMaybe, Candidates: p.ownCands}, p.control, pp.ctl)
			if err == nil {
				calls = append(calls, cmm{pp.wg, pkt})
			}
		}
		p.applyRoute(pp, now, relayUp)
		st := pp.sm.Status(now)
		if st.Path != pp.path {
			if pp.path != "" {
				p.metrics.pathChanges.Inc()
				p.log.Info("path changed", "peer", pp.name, "from", pp.path, "to", st.Path, "addr", st.Addr, "reason", st.Reason)
			}
			pp.path = st.Path
		}
	}
	p.mu.Unlock()

	for _, o := range pings {
		p.metrics.pings.Inc()
		p.bind.SendTo(o.pkt, o.to)
	}
	for _, c := range calls {
		p.relays.SendPacket(c.wg, c.pkt)
	}
	return next
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
	now := time.Now()
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
