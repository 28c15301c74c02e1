package node

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/api/vocab"
	"github.com/wirelace/wirelace/daemon/bind"
	"github.com/wirelace/wirelace/daemon/mesh"
	"github.com/wirelace/wirelace/daemon/path"
	"github.com/wirelace/wirelace/daemon/probe"
)

// The cost of the path loop with many peers, on a fake clock and without
// sockets: the path manager runs against a real (unopened) Bind wrapped to
// count what the loop touches and to answer its pings as the peers would,
// and a fake device that counts its reads. Only this node's work is timed
// (the peers' is subtracted).

// countingBind counts the path loop's calls into the Bind, hands the
// probes it sends to onSend instead of a socket, and reports the traffic
// of the peers in traffic (WireGuard's, as the Bind would count it).
type countingBind struct {
	*bind.Bind
	activity, setRoute, sendTo int
	onSend                     func(pkt []byte, to netip.AddrPort)
	traffic                    map[wgtypes.Key]*bind.Activity
	epoch                      uint64 // the last NextEpoch
	arrived                    uint64 // the epoch of the last arrive
}

func (c *countingBind) ArrivedSince(epoch uint64) bool {
	return c.arrived >= epoch || c.Bind.ArrivedSince(epoch)
}

func (c *countingBind) NextEpoch() uint64 {
	c.epoch = c.Bind.NextEpoch()
	return c.epoch
}

func (c *countingBind) Activity(k wgtypes.Key) bind.Activity {
	c.activity++
	if a := c.traffic[k]; a != nil {
		return *a
	}
	return c.Bind.Activity(k)
}

func (c *countingBind) SetRoute(k wgtypes.Key, r bind.Route) error {
	c.setRoute++
	return c.Bind.SetRoute(k, r)
}

func (c *countingBind) SendTo(pkt []byte, to netip.AddrPort) error {
	c.sendTo++
	if c.onSend != nil {
		c.onSend(pkt, to)
	}
	return nil
}

// countingDevice is the device's counters, read through its peer list as
// the real one is (which lists every peer: with 1000 peers a real read
// over UAPI measured 13-28 ms).
type countingDevice struct {
	peers []wgtypes.Peer
	index map[wgtypes.Key]int
	reads int
	cost  time.Duration // what each read is taken to cost
}

func (d *countingDevice) Peers() ([]wgtypes.Peer, error) {
	d.reads++
	return slices.Clone(d.peers), nil
}

// received counts n authenticated bytes from k.
func (d *countingDevice) received(k wgtypes.Key, n int) {
	d.peers[d.index[k]].ReceiveBytes += int64(n)
}

// simPeer is a remote node: its control key, and whether it answers.
type simPeer struct {
	name string
	wg   wgtypes.Key
	ctl  wgtypes.Key // public
	ring *probe.Keyring
	addr netip.AddrPort
	up   bool
}

type simPong struct {
	pkt  []byte
	from netip.AddrPort
}

// simMesh is this node with n peers, each reachable directly at an address
// of its own.
type simMesh struct {
	tb     testing.TB
	clk    *fakeClock
	p      *paths
	b      *countingBind
	dev    *countingDevice
	peers  []*simPeer
	byAddr map[netip.AddrPort]*simPeer
	byWG   map[wgtypes.Key]*simPeer

	pongs []simPong
	// replying: runRequests has the peer send the requests and this node
	// answer them.
	replying bool
	busy     time.Duration // this node's time in step and handleProbe
	remote   time.Duration // the peers' time (answering pings), within busy
	steps    int
}

func newSimMesh(tb testing.TB, n int) *simMesh {
	tb.Helper()
	log := slog.New(slog.DiscardHandler)
	m := &simMesh{tb: tb, clk: newFakeClock(), byAddr: map[netip.AddrPort]*simPeer{}, byWG: map[wgtypes.Key]*simPeer{}}
	m.b = &countingBind{Bind: bind.New(log), traffic: map[wgtypes.Key]*bind.Activity{}}
	m.b.onSend = m.answer
	ctlPriv := newKey(tb)
	m.p = newPaths(m.b.Bind, ctlPriv, newMetrics(nil), log)
	m.p.bind = m.b
	m.p.now = m.clk.now
	m.dev = &countingDevice{index: map[wgtypes.Key]int{}}
	m.p.setDevice(m.dev)
	m.p.readCost = func(time.Time) time.Duration { return m.dev.cost }

	for i := range n {
		ctl := newKey(tb)
		sp := &simPeer{
			wg:   newKey(tb).PublicKey(),
			ring: probe.NewKeyring(ctl, m.clk.now),
			addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 51820),
			up:   true,
		}
		sp.ring.SetMembers([]wgtypes.Key{ctlPriv.PublicKey()})
		sp.ctl = ctl.PublicKey()
		sp.name = fmt.Sprintf("peer-%d", i)
		m.peers = append(m.peers, sp)
		m.byAddr[sp.addr] = sp
		m.byWG[sp.wg] = sp
		m.dev.index[sp.wg] = len(m.dev.peers)
		m.dev.peers = append(m.dev.peers, wgtypes.Peer{PublicKey: sp.wg})
	}
	top := m.topology()
	m.p.update(top, top.Routes(), nil)
	return m
}

// topology is the mesh as the reconcile loop would give it to update.
func (m *simMesh) topology() mesh.Topology {
	var top mesh.Topology
	for _, sp := range m.peers {
		top.Peers = append(top.Peers, mesh.Node{
			Name: sp.name, PublicKey: sp.wg, ControlKey: sp.ctl,
			Endpoints: []netip.AddrPort{sp.addr}, EndpointKinds: []vocab.EndpointKind{vocab.EndpointSTUN},
			NATType: "cone-port-restricted",
		})
	}
	return top
}

// answer is the peers' side: a ping to a peer that is up gets a pong.
func (m *simMesh) answer(pkt []byte, to netip.AddrPort) {
	start := time.Now()
	defer func() { m.remote += time.Since(start) }()
	sp := m.byAddr[to]
	if sp == nil || !sp.up {
		return
	}
	msg, sender, err := sp.ring.Open(pkt)
	if err != nil || msg.Kind != probe.Ping {
		return
	}
	pong, err := sp.ring.Seal(probe.Message{Kind: probe.Pong, TxID: msg.TxID, Observed: netip.MustParseAddrPort("198.19.0.1:51820")}, sender)
	if err != nil {
		m.tb.Fatal(err)
	}
	m.pongs = append(m.pongs, simPong{pong, to})
}

// talk has sp exchange WireGuard traffic with this node directly, at now:
// a batch sent to it and one received from it (which the device
// authenticates).
func (m *simMesh) talk(sp *simPeer) {
	m.send(sp, m.clk.now())
	m.arrive(sp, sp.addr, m.clk.now(), true)
}

// traffic is sp's traffic as the Bind counts it.
func (m *simMesh) traffic(sp *simPeer) *bind.Activity {
	a := m.b.traffic[sp.wg]
	if a == nil {
		a = &bind.Activity{}
		m.b.traffic[sp.wg] = a
	}
	return a
}

// send has WireGuard send a batch to sp directly at `at`.
func (m *simMesh) send(sp *simPeer, at time.Time) { m.traffic(sp).LastSend = at }

// arrive has a WireGuard message for sp's session arrive directly from
// `from` at `at`, counted and stamped as the Bind would (see
// bind.Arrival); the device authenticates it if genuine.
func (m *simMesh) arrive(sp *simPeer, from netip.AddrPort, at time.Time, genuine bool) {
	a := m.traffic(sp)
	a.Recv++
	if a.RecvFrom != from || a.RecvSources == 0 {
		a.RecvFrom = from
		a.RecvSources++
	}
	if e := max(m.b.epoch, 1); a.Arrivals[0].Epoch != e {
		a.Arrivals[1] = a.Arrivals[0]
		a.Arrivals[0] = bind.Arrival{Epoch: e, At: at, Sources: a.RecvSources, Relayed: a.Relayed}
		m.b.arrived = e
	}
	if genuine {
		m.dev.received(sp.wg, 128)
	}
}

// inLoop is how many peers the path loop ticks.
func (m *simMesh) inLoop() int {
	m.p.mu.Lock()
	defer m.p.mu.Unlock()
	return len(m.p.loop)
}

// stepOnce runs the path loop once at the current time, as run does.
func (m *simMesh) stepOnce() time.Time {
	start := time.Now()
	next := m.p.step(m.clk.now())
	m.busy += time.Since(start)
	m.steps++
	return next
}

// run advances the clock by d as the daemon's loop would: a step whenever
// the machines ask (at most pathTick apart), pongs 1 ms after their ping,
// and another step after probes arrive (they kick the loop). The peers in
// talking exchange traffic before every step.
func (m *simMesh) run(d time.Duration, talking ...*simPeer) {
	end := m.clk.now().Add(d)
	for m.clk.now().Before(end) {
		now := m.clk.now()
		for _, sp := range talking {
			m.talk(sp)
		}
		m.advance(now)
	}
}

// advance runs one step of the loop at now, delivers the pongs it drew a
// millisecond later, runs the step a probe's kick asks for, and moves the
// clock to the loop's next wake-up (at least 10 ms, at most pathTick).
// Sends and answers do not wake the loop (the daemon sees them at its next
// step, as here); only time and probes do.
func (m *simMesh) advance(now time.Time) {
	next := m.stepOnce()
	wait := min(max(next.Sub(now), 10*time.Millisecond), pathTick)
	if len(m.pongs) > 0 {
		m.clk.add(time.Millisecond)
		wait -= time.Millisecond
		pongs := m.pongs
		m.pongs = nil
		start := time.Now()
		for _, pg := range pongs {
			m.p.handleProbe(pg.pkt, pg.from, false, wgtypes.Key{})
		}
		m.busy += time.Since(start)
	}
	select {
	case <-m.p.kick:
		m.stepOnce()
	default:
	}
	m.clk.add(wait)
}

// counts is what the loop did over a stretch of simulated time.
type counts struct {
	activity, setRoute, pings, devReads, steps int
	busy                                       time.Duration
}

func (m *simMesh) counts() counts {
	return counts{m.b.activity, m.b.setRoute, m.b.sendTo, m.dev.reads, m.steps, m.busy - m.remote}
}

func (c counts) sub(o counts) counts {
	return counts{c.activity - o.activity, c.setRoute - o.setRoute, c.pings - o.pings, c.devReads - o.devReads, c.steps - o.steps, c.busy - o.busy}
}

func (c counts) String() string {
	return fmt.Sprintf("%d steps, %d Bind activity reads, %d routes set, %d pings, %d device reads, %v of this node's time",
		c.steps, c.activity, c.setRoute, c.pings, c.devReads, c.busy.Round(time.Microsecond))
}

// measure runs the mesh for d and returns what the loop did meanwhile.
func (m *simMesh) measure(d time.Duration, talking ...*simPeer) counts {
	before := m.counts()
	m.run(d, talking...)
	return m.counts().sub(before)
}

// pingsTo counts the pings sent to sp from now on, until stop is called.
func (m *simMesh) pingsTo(sp *simPeer) (n *int, stop func()) {
	n = new(int)
	inner := m.b.onSend
	m.b.onSend = func(pkt []byte, to netip.AddrPort) {
		if to == sp.addr {
			*n++
		}
		inner(pkt, to)
	}
	return n, func() { m.b.onSend = inner }
}

// TestIdlePeersCost: 1000 peers, all reachable directly. Once the start-up
// probing is over and no peer has traffic, the path loop touches no peer
// but to read its Bind counters once per idleScan: no ticks, no pings, no
// routes, no device reads. Peers with traffic cost what they did before,
// and only they; an idle peer with traffic is probed within idleScan (at
// once for a relayed packet).
func TestIdlePeersCost(t *testing.T) {
	const n = 1000
	m := newSimMesh(t, n)
	warm := m.measure(2 * time.Minute)
	t.Logf("first 2 min (start-up probing): %v", warm)
	if m.inLoop() != 0 {
		t.Fatalf("%d peers in the loop with no traffic", m.inLoop())
	}

	const window = time.Minute
	c := m.measure(window)
	perSec := func(x int) float64 { return float64(x) / window.Seconds() }
	core := c.busy.Seconds() / window.Seconds()
	t.Logf("idle, per simulated second: %.1f steps, %.1f Bind activity reads, %.1f routes set, %.1f pings, %.2f device reads, %v busy (%.3f%% of a core)",
		perSec(c.steps), perSec(c.activity), perSec(c.setRoute), perSec(c.pings), perSec(c.devReads),
		(c.busy / time.Duration(window.Seconds())).Round(time.Microsecond), 100*core)
	scans := int(window/idleScan) + 1
	if c.pings != 0 || c.setRoute != 0 || c.devReads != 0 || m.inLoop() != 0 {
		t.Fatalf("idle mesh: %v", c)
	}
	if c.activity > n*scans || c.steps > scans+1 {
		t.Fatalf("idle mesh: %v, want at most one scan of each peer every %v", c, idleScan)
	}
	// A smoke floor, generous for slow machines and the race detector
	// (measured: 0.06% of a core; 0.69% before, without the device reads,
	// which came to another 4 reads a second, each 13-28 ms with 1000 real
	// peers).
	if core > 0.05 {
		t.Errorf("idle mesh costs %.2f%% of a core", 100*core)
	}

	// Ten peers talk: only they are ticked and probed; their traffic
	// confirms their paths (cheap device reads, only while they talk), so
	// they are hardly pinged.
	talking := m.peers[:10]
	c = m.measure(30*time.Second, talking...)
	t.Logf("10 of %d peers talking for 30 s: %v", n, c)
	if l := m.inLoop(); l != len(talking) {
		t.Fatalf("%d peers in the loop, %d talking", l, len(talking))
	}
	scanned := (n - len(talking)) * (int(30*time.Second/idleScan) + 1)
	if perStep := float64(c.activity-scanned) / float64(c.steps); perStep > float64(len(talking)) {
		t.Fatalf("%.1f Bind reads per step beyond the idle scans, for %d peers talking", perStep, len(talking))
	}
	if c.pings > len(talking)*(2+int(30*time.Second/(path.TrustDirect-path.RefreshBefore))) {
		t.Fatalf("%d pings for %d peers talking 30 s", c.pings, len(talking))
	}
	if c.devReads == 0 || c.devReads > int(30*time.Second/counterPoll)+1 {
		t.Fatalf("%d device reads in 30 s", c.devReads)
	}

	// They stop: idle again after path.IdleTimeout and the trust of their
	// last confirmation.
	m.run(path.IdleTimeout + path.TrustDirect + time.Second)
	if m.inLoop() != 0 {
		t.Fatalf("%d peers in the loop after the traffic stopped", m.inLoop())
	}

	// Reads as costly as with 1000 real peers are too costly to confirm by
	// traffic: pings do, and the device is read once a counterRecheck.
	m.dev.cost = 20 * time.Millisecond
	c = m.measure(2*time.Minute, talking...)
	t.Logf("10 peers talking for 2 min, device reads costing %v: %v", m.dev.cost, c)
	if c.devReads > 2+int(2*time.Minute/counterRecheck) { // two costly reads in a row stop them
		t.Fatalf("%d device reads costing %v each in 2 min", c.devReads, m.dev.cost)
	}
	m.dev.cost = 0
	m.run(path.IdleTimeout + path.TrustDirect + time.Second)

	// An idle peer that WireGuard sends to directly (its standby address) is
	// pinged within idleScan, and confirmed a ping's RTT later.
	sp := m.peers[500]
	pings, stop := m.pingsTo(sp)
	m.run(idleScan) // away from the last scan
	sent := m.clk.now()
	m.b.traffic[sp.wg] = &bind.Activity{LastSend: sent}
	for *pings == 0 {
		if m.clk.now().Sub(sent) > idleScan+pathTick {
			t.Fatal("an idle peer sent to directly was not probed")
		}
		m.run(10 * time.Millisecond)
	}
	t.Logf("idle peer sent to: probed %v later", m.clk.now().Sub(sent))
	if d := m.clk.now().Sub(sent); d > idleScan+20*time.Millisecond {
		t.Fatalf("probed %v after the send", d)
	}
	stop()

	// A WireGuard packet through the relay from an idle peer wakes it at
	// once: the next step (the packet kicks the loop) probes it.
	sp = m.peers[700]
	pings, stop = m.pingsTo(sp)
	defer stop()
	m.p.handleRelayed(sp.wg, transport(0, 64))
	select {
	case <-m.p.kick:
	default:
		t.Fatal("a relayed packet from an idle peer did not kick the loop")
	}
	m.stepOnce()
	if *pings == 0 {
		t.Fatal("a relayed packet from an idle peer did not get it probed at once")
	}
}

// BenchmarkIdlePeers: one simulated second of a mesh of 1000 idle peers
// per op, so ns/op is this node's CPU time per second.
func BenchmarkIdlePeers(b *testing.B) {
	m := newSimMesh(b, 1000)
	m.run(2 * time.Minute)
	m.busy, m.remote = 0, 0
	b.ResetTimer()
	for range b.N {
		m.run(time.Second)
	}
	b.StopTimer()
	b.ReportMetric(float64(m.busy-m.remote)/float64(b.N)/float64(time.Second)*100, "%core")
}

// BenchmarkUpdate1000: the path manager's share of a reconcile of a mesh of
// 1000 peers, nothing changed.
func BenchmarkUpdate1000(b *testing.B) {
	m := newSimMesh(b, 1000)
	top := m.topology()
	b.ResetTimer()
	for range b.N {
		m.p.update(top, top.Routes(), nil)
	}
}

// request is one exchange of sparse traffic: this node sends sp a packet
// at `at` and, if the peer answers, the answer arrives rtt later.
type request struct {
	at     time.Time
	answer bool
}

// runRequests runs the mesh for d while this node sends sp a packet every
// period, answered rtt later while answered() holds (the device counts the
// answers), as a pod pinging another across the mesh does; the path loop
// runs as in run. It returns the first send that went unanswered.
func (m *simMesh) runRequests(d, period, rtt time.Duration, sp *simPeer, answered func() bool) (firstLost time.Time) {
	end := m.clk.now().Add(d)
	nextSend := m.clk.now()
	var pending []time.Time // answers due
	for m.clk.now().Before(end) {
		now := m.clk.now()
		for !nextSend.After(now) {
			if m.replying {
				// The peer asks, this node answers.
				m.arrive(sp, sp.addr, nextSend, true)
				m.send(sp, nextSend.Add(rtt))
				nextSend = nextSend.Add(period)
				continue
			}
			m.send(sp, nextSend)
			if answered() {
				pending = append(pending, nextSend.Add(rtt))
			} else if firstLost.IsZero() {
				firstLost = nextSend
			}
			nextSend = nextSend.Add(period)
		}
		for len(pending) > 0 && !pending[0].After(now) {
			m.arrive(sp, sp.addr, pending[0], true)
			pending = pending[1:]
		}
		m.advance(now)
	}
	return firstLost
}

// TestSparseTrafficConfirms: a pod pings another across the mesh once a
// second, answered within milliseconds. The answers, authenticated by the
// device's counters, confirm the direct path, though the reads are a
// second apart (each dated at the Bind's stamp of the first answer after
// the read before, see observeRecv): at most a heartbeat every few
// seconds, not a liveness ping a second (which dating a proof at the read
// before, or refusing reads older than 500 ms, gave). When the answers
// stop (the path is cut), the first unanswered send is pinged within
// path.SuspectAfter and the path doubted within LivenessWait of that.
func TestSparseTrafficConfirms(t *testing.T) {
	m := newSimMesh(t, 3)
	sp := m.peers[1]
	m.run(10*time.Second, sp)
	if st := m.p.peers[sp.wg].sm.Status(m.clk.now()); st.Path != vocab.PathDirect {
		t.Fatalf("warm-up: path %s", st.Path)
	}
	pings, stop := m.pingsTo(sp)
	const window = time.Minute
	reads := m.dev.reads
	m.runRequests(window, time.Second, 3*time.Millisecond, sp, func() bool { return true })
	stop()
	t.Logf("1 pps answered for %v: %d pings to the peer, %d device reads", window, *pings, m.dev.reads-reads)
	if *pings > int(window/(3*time.Second)) {
		t.Fatalf("%d pings in %v of answered traffic, want at most one per 3 s", *pings, window)
	}
	if st := m.p.peers[sp.wg].sm.Status(m.clk.now()); st.Path != vocab.PathDirect {
		t.Fatalf("after the traffic: path %s (%s)", st.Path, st.Reason)
	}
	// The other side of the same traffic: the peer asks and this node
	// answers, which nothing answers back (path.ReplyWindow).
	m.replying = true
	pings, stop = m.pingsTo(sp)
	m.runRequests(window, time.Second, 2*time.Millisecond, sp, func() bool { return true })
	stop()
	m.replying = false
	t.Logf("answering 1 pps for %v: %d pings to the peer", window, *pings)
	if *pings > int(window/(3*time.Second)) {
		t.Fatalf("%d pings in %v of answering, want at most one per 3 s", *pings, window)
	}

	// The path is cut: sends go on, no answer comes, pongs neither.
	sp.up = false
	pings, stop = m.pingsTo(sp)
	defer stop()
	var firstPing time.Time
	inner := m.b.onSend
	m.b.onSend = func(pkt []byte, to netip.AddrPort) {
		if to == sp.addr && firstPing.IsZero() {
			firstPing = m.clk.now()
		}
		inner(pkt, to)
	}
	cut := m.clk.now()
	lost := m.runRequests(path.SuspectAfter+path.LivenessWait+50*time.Millisecond, time.Second, 3*time.Millisecond, sp, func() bool { return false })
	if firstPing.IsZero() {
		t.Fatal("a cut path was not pinged")
	}
	t.Logf("cut at %v: first unanswered send %v later, pinged %v after it", cut.Sub(t0), lost.Sub(cut), firstPing.Sub(lost))
	if d := firstPing.Sub(lost); d < 0 || d > path.SuspectAfter+20*time.Millisecond {
		t.Fatalf("pinged %v after the first unanswered send, want within %v", d, path.SuspectAfter)
	}
	if st := m.p.peers[sp.wg].sm.Status(m.clk.now()); st.Path == vocab.PathDirect {
		t.Fatalf("%v after the cut: still direct only (%s)", m.clk.now().Sub(cut), st.Reason)
	}
}

// Spoofed messages stamped by the Bind never confirm: not with the
// device's counter standing still (a spoofer copying the peer's address
// and session), nor when a spoofer's message from another address is the
// first after a read, however much the peer's own traffic made the counter
// grow meanwhile. Pongs are off, so only traffic could confirm.
func TestSpoofedStampNeverConfirms(t *testing.T) {
	m := newSimMesh(t, 2)
	sp := m.peers[0]
	m.run(10*time.Second, sp)
	pp := m.p.peers[sp.wg]
	if st := pp.sm.Status(m.clk.now()); st.Path != vocab.PathDirect {
		t.Fatalf("warm-up: path %s", st.Path)
	}
	sp.up = false

	// The peer is silent; a spoofer sends its messages from its address,
	// ten a second, while this node sends one a second.
	start := m.clk.now()
	for end := start.Add(path.TrustDirect + path.FallbackAfter); m.clk.now().Before(end); {
		now := m.clk.now()
		if now.Sub(start)%time.Second < 100*time.Millisecond {
			m.send(sp, now)
		}
		m.arrive(sp, sp.addr, now, false)
		m.stepOnce()
		m.clk.add(100 * time.Millisecond)
	}
	if st := pp.sm.Status(m.clk.now()); st.Path == vocab.PathDirect {
		t.Fatalf("spoofed from the peer's address: still %s (%s)", st.Path, st.Reason)
	}

	// The peer talks, answered within 3 ms, but a spoofer's message from
	// elsewhere arrives first after every read: the growth cannot be told
	// from the spoofer's, so nothing is confirmed, and the path is left
	// once its trust runs out. Without the spoofer the same traffic keeps
	// it (the control).
	for _, spoof := range []bool{false, true} {
		m := newSimMesh(t, 2)
		sp := m.peers[0]
		m.run(10*time.Second, sp)
		pp := m.p.peers[sp.wg]
		sp.up = false
		other := netip.MustParseAddrPort("203.0.113.9:51820")
		left := false
		for end := m.clk.now().Add(3 * path.TrustDirect); m.clk.now().Before(end); {
			now := m.clk.now()
			if spoof {
				m.arrive(sp, other, now, false)
			}
			m.send(sp, now.Add(time.Millisecond))
			m.arrive(sp, sp.addr, now.Add(4*time.Millisecond), true)
			m.clk.add(5 * time.Millisecond)
			for range 4 {
				m.stepOnce()
				m.clk.add(250 * time.Millisecond)
			}
			left = left || pp.sm.Status(m.clk.now()).Path != vocab.PathDirect
		}
		if left != spoof {
			t.Fatalf("spoofer %v: path left direct %v", spoof, left)
		}
	}
}
