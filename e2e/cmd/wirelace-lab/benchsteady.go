package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/daemon/probe"
	"github.com/wirelace/wirelace/e2e/benchreport"
	"github.com/wirelace/wirelace/e2e/lab"
)

// The steady state: every pair pings once a second (a peer without traffic
// goes idle after a minute and is not probed at all, so a quiet mesh says
// nothing about heartbeats or flapping), paths settle for steadySettle,
// then for the window each node's path changes per peer come from its log
// and its probe pings per peer from counters in its namespace.
const (
	steadyTraffic = time.Second
	steadySettle  = 5 * time.Second
)

func benchSteady(ctx context.Context, nodes []*lab.Node, window time.Duration) (benchreport.Steady, error) {
	s := benchreport.Steady{WindowS: window.Seconds(), TrafficPPS: time.Second.Seconds() / steadyTraffic.Seconds()}
	meshIP := map[string]string{}
	for _, n := range nodes {
		st, err := n.Status(ctx)
		if err != nil || len(st.MeshIPs) == 0 {
			return s, fmt.Errorf("%s has no mesh IP: %v", n.Name, err)
		}
		meshIP[n.Name] = st.MeshIPs[0]
	}
	var pingers []*lab.Pinger
	defer func() {
		for _, p := range pingers {
			p.Stop()
		}
	}()
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			p, err := lab.StartPinger(a.NetNS, meshIP[b.Name], steadyTraffic)
			if err != nil {
				return s, err
			}
			pingers = append(pingers, p)
		}
	}
	pingLen, err := probePingLen()
	if err != nil {
		return s, err
	}
	for _, n := range nodes {
		if err := countProbes(ctx, n, pingLen); err != nil {
			return s, err
		}
	}
	if err := sleep(ctx, steadySettle); err != nil {
		return s, err
	}

	type snapshot struct {
		probes         map[netip.Addr]float64
		pings, changes float64
	}
	snap := func() (map[string]snapshot, error) {
		out := map[string]snapshot{}
		for _, n := range nodes {
			var sn snapshot
			var err error
			if sn.probes, err = probeCounts(ctx, n); err != nil {
				return nil, err
			}
			if sn.pings, sn.changes, err = probeMetrics(ctx, n); err != nil {
				return nil, err
			}
			out[n.Name] = sn
		}
		return out, nil
	}
	before, err := snap()
	if err != nil {
		return s, err
	}
	t0 := time.Now()
	if err := sleep(ctx, window); err != nil {
		return s, err
	}
	after, err := snap()
	if err != nil {
		return s, err
	}
	t1 := time.Now()
	secs := t1.Sub(t0).Seconds()

	for _, p := range pingers {
		for _, ping := range p.Pings() {
			if ping.Lost && !ping.Sent.Before(t0) && ping.Sent.Before(t1) {
				s.TrafficLost++
			}
		}
	}
	for _, n := range nodes {
		events, err := pathEvents(n.LogPath, n.Name, t0, t1)
		if err != nil {
			return s, err
		}
		st, err := n.Status(ctx)
		if err != nil {
			return s, err
		}
		path := map[string]string{}
		for _, p := range st.Peers {
			path[p.Node] = p.Path
		}
		b, a := before[n.Name], after[n.Name]
		attributed := 0.0
		for _, peer := range nodes {
			if peer == n {
				continue
			}
			sp := benchreport.SteadyPeer{Node: n.Name, Peer: peer.Name, Path: path[peer.Name]}
			for _, e := range events {
				if e.Peer == peer.Name {
					sp.PathChanges++
					s.Events = append(s.Events, e.report(t0))
				}
			}
			for _, addr := range nodeAddrs(peer) {
				d := a.probes[addr] - b.probes[addr]
				sp.ProbesPerS += d / secs
				attributed += d
			}
			s.Peers = append(s.Peers, sp)
		}
		node := benchreport.SteadyNode{Node: n.Name, Peers: len(nodes) - 1, PingsSent: a.pings - b.pings, PathChanges: a.changes - b.changes}
		if node.PingsSent != attributed {
			fmt.Printf("  note: %s's counter says %.0f probe pings, %.0f were seen going to its peers' addresses\n", n.Name, node.PingsSent, attributed)
		}
		s.Nodes = append(s.Nodes, node)
	}
	slices.SortFunc(s.Events, func(a, b benchreport.PathEvent) int { return cmp.Compare(a.T, b.T) })
	return s, nil
}

// nodeAddrs are the addresses a node's peers can reach it at: its own and,
// behind a NAT, its router's.
func nodeAddrs(n *lab.Node) []netip.Addr {
	if n.Site != nil {
		return []netip.Addr{n.IP, n.Site.WAN}
	}
	return []netip.Addr{n.IP}
}

// probeMetrics reads the daemon's own counters of probe pings sent and
// path changes.
func probeMetrics(ctx context.Context, n *lab.Node) (pings, changes float64, err error) {
	m, err := n.Metrics(ctx)
	if err != nil {
		return 0, 0, err
	}
	p, err := lab.MetricValues(m, "wirelace_probe_pings_sent_total")
	if err != nil {
		return 0, 0, err
	}
	c, err := lab.MetricValues(m, "wirelace_path_changes_total")
	return p[""], c[""], err
}

func printSteady(s benchreport.Steady) {
	for _, p := range s.Peers {
		fmt.Printf("  %-5s → %-5s %-13s %3d path changes  %.2f probes/s\n", p.Node, p.Peer, p.Path, p.PathChanges, p.ProbesPerS)
	}
	for _, n := range s.Nodes {
		fmt.Printf("  %s's own counters: %.0f probe pings to %d peers (%.2f/s per peer), %.0f path changes\n",
			n.Node, n.PingsSent, n.Peers, n.PingsSent/s.WindowS/float64(n.Peers), n.PathChanges)
	}
	fmt.Printf("  traffic pings lost during the window: %d\n", s.TrafficLost)
	for _, e := range s.Events {
		printEvent(e)
	}
}

// probeTable is the nftables table that counts probe pings in a node.
const probeTable = "wlbench"

// countProbes counts, in n's namespace, the probe pings its daemon sends,
// per destination address (an nftables set with a counter per element).
// A ping is told apart from WireGuard and STUN by the probe magic, and
// from a pong by its size: a ping is padded to the largest pong, an IPv6
// one, so a pong to an IPv4 address is smaller. (IPv4 only: the lab's
// underlay is.)
func countProbes(ctx context.Context, n *lab.Node, pingLen int) error {
	rules := fmt.Sprintf(`table ip %s {
	set pings { type ipv4_addr; flags dynamic; counter; }
	chain out { type filter hook output priority 0; udp sport %d @th,64,%d 0x%x udp length %d add @pings { ip daddr }; }
}
`, probeTable, wirelacedPort, 8*len(probe.Magic), []byte(probe.Magic), pingLen+8)
	file := filepath.Join(n.Dir, probeTable+".nft")
	if err := os.WriteFile(file, []byte(rules), 0o644); err != nil {
		return err
	}
	_, err := n.Exec(ctx, "nft", "-f", file)
	return err
}

// wirelacedPort is wirelaced's default --listen-port, which the lab keeps.
const wirelacedPort = 51820

// probeCounts reads countProbes' counters: pings per destination.
func probeCounts(ctx context.Context, n *lab.Node) (map[netip.Addr]float64, error) {
	out, err := n.Exec(ctx, "nft", "-j", "list", "set", "ip", probeTable, "pings")
	if err != nil {
		return nil, err
	}
	var j struct {
		Nftables []struct {
			Set *struct {
				Elem []struct {
					Elem struct {
						Val     string `json:"val"`
						Counter struct {
							Packets float64 `json:"packets"`
						} `json:"counter"`
					} `json:"elem"`
				} `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		return nil, fmt.Errorf("probe counters on %s: %w", n.Name, err)
	}
	counts := map[netip.Addr]float64{}
	for _, o := range j.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			if a, err := netip.ParseAddr(e.Elem.Val); err == nil {
				counts[a] += e.Elem.Counter.Packets
			}
		}
	}
	return counts, nil
}

// probePingLen is the size of a probe ping on the wire (its UDP payload),
// from the probe package itself.
func probePingLen() (int, error) {
	a, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return 0, err
	}
	b, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return 0, err
	}
	k := probe.NewKeyring(a, nil)
	k.SetMembers([]wgtypes.Key{b.PublicKey()})
	pkt, err := k.Seal(probe.Message{Kind: probe.Ping}, b.PublicKey())
	return len(pkt), err
}
