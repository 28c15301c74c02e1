package benchreport

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// FailoverFile holds Failover.
const FailoverFile = "failover.json"

// Failover is the path part: a public node, a node behind a cone NAT and
// one behind a symmetric NAT, quiet for a while (Steady), then a direct
// path cut and restored under a steady ping (Cut).
type Failover struct {
	Steady Steady      `json:"steady"`
	Cut    FailoverCut `json:"cut"`
}

// Steady is every node's view of every peer over a window with light
// traffic on every pair.
type Steady struct {
	WindowS float64 `json:"window_s"`
	// TrafficPPS is each pair's ping rate during the window (peers without
	// traffic go idle and are not probed at all).
	TrafficPPS  float64      `json:"traffic_pps"`
	TrafficLost int          `json:"traffic_lost"`
	Peers       []SteadyPeer `json:"peers"`
	Nodes       []SteadyNode `json:"nodes"`
	// Events are the path changes in the window, s since its start.
	Events []PathEvent `json:"path_events,omitempty"`
}

// SteadyPeer is one node's view of one peer.
type SteadyPeer struct {
	Node string `json:"node"`
	Peer string `json:"peer"`
	// Path is the path at the end of the window.
	Path string `json:"path"`
	// PathChanges are the node's "path changed" log lines for the peer.
	PathChanges int `json:"path_changes"`
	// ProbesPerS are path probe pings the node sent to the peer's
	// addresses, per second.
	ProbesPerS float64 `json:"probes_per_s"`
}

// SteadyNode is one daemon's own counters over the window, a cross-check
// of the per-peer numbers.
type SteadyNode struct {
	Node        string  `json:"node"`
	Peers       int     `json:"peers"`
	PingsSent   float64 `json:"metric_pings_sent"`
	PathChanges float64 `json:"metric_path_changes"`
}

// FailoverCut is a 20/s ping between pods on a direct path while the path
// is cut at a NAT router and restored. Times are seconds since the cut.
type FailoverCut struct {
	From       string       `json:"from"`
	To         string       `json:"to"`
	IntervalMs float64      `json:"interval_ms"`
	Pings      []PingSample `json:"pings"`
	RestoreS   float64      `json:"restore_s"`
	Events     []PathEvent  `json:"path_events"`
	// Across the cut (pings sent before the restore).
	LargestGapMs float64 `json:"largest_gap_ms"`
	LostCut      int     `json:"lost_cut"`
	// ResumedMs: the first reply to a ping sent after the cut.
	ResumedMs float64 `json:"resumed_ms"`
	// RelayAloneMs: the pinging node's path to the peer became relay.
	RelayAloneMs float64 `json:"relay_alone_ms"`
	// Failback: from the restore until both nodes say direct, and the
	// pings sent from the restore on.
	FailbackMs    float64 `json:"failback_ms"`
	FailbackGapMs float64 `json:"failback_gap_ms"`
	LostFailback  int     `json:"lost_failback"`
}

// PingSample is one request: when it was sent (s since the cut) and its
// round trip, or lost.
type PingSample struct {
	T     float64 `json:"t"`
	RTTMs float64 `json:"rtt_ms,omitempty"`
	Lost  bool    `json:"lost,omitempty"`
}

// PathEvent is a daemon's "path changed" for a peer, s since the cut (or
// the start of the steady window), with the daemon's reason.
type PathEvent struct {
	T      float64 `json:"t"`
	Node   string  `json:"node"`
	Peer   string  `json:"peer"`
	From   string  `json:"from"`
	To     string  `json:"to"`
	Reason string  `json:"reason,omitempty"`
}

// maxListedEvents bounds the steady window's path changes listed in the
// report: a flapping pair would otherwise fill it.
const maxListedEvents = 10

// failoverSection adds the failover part to the report, if it ran.
func failoverSection(f Failover, out string, md *strings.Builder) error {
	if err := failoverPlot(f.Cut, filepath.Join(out, "failover.svg")); err != nil {
		return err
	}
	s, c := f.Steady, f.Cut
	fmt.Fprintf(md, "\n## Failover and steady state\n\nA public node, a node behind a cone NAT and one behind a symmetric NAT, one relay.\n\n"+
		"Steady state over %s, each pair pinging %.0f/s (%d lost): path changes and probe pings per peer (targets: none, about %.2f/s).\n\n"+
		"| node | peer | path | path changes | probes/s |\n|---|---|---|---|---|\n", duration(s.WindowS), s.TrafficPPS, s.TrafficLost, targetProbesPerS)
	for _, p := range s.Peers {
		fmt.Fprintf(md, "| %s | %s | %s | %d | %.2f |\n", p.Node, p.Peer, p.Path, p.PathChanges, p.ProbesPerS)
	}
	for i, e := range s.Events {
		if i == maxListedEvents {
			fmt.Fprintf(md, "\n… and %d more path changes.\n", len(s.Events)-i)
			break
		}
		if i == 0 {
			md.WriteString("\nPath changes in the window:\n\n")
		}
		fmt.Fprintf(md, "- %.1f s: %s sees %s %s → %s (%s)\n", e.T, e.Node, e.Peer, e.From, e.To, e.Reason)
	}
	var own []string
	for _, n := range s.Nodes {
		own = append(own, fmt.Sprintf("%s %.0f pings to %d peers, %.0f path changes", n.Node, n.PingsSent, n.Peers, n.PathChanges))
	}
	if len(own) > 0 {
		fmt.Fprintf(md, "\nThe daemons' own counters over the window: %s.\n", strings.Join(own, "; "))
	}
	fmt.Fprintf(md, "\nA %.0f/s ping from a pod on %s to a pod on %s, direct; the path is cut at %s's router, then restored %.1f s later.\n\n"+
		"![failover timeline](failover.svg)\n\n| | measured | target |\n|---|---|---|\n"+
		"| largest gap across the cut | %.0f ms (%d lost) | < %d ms |\n"+
		"| first reply to a ping sent after the cut | %.0f ms | |\n"+
		"| %s on the relay alone | %.1f s after the cut | |\n"+
		"| failback: both sides direct | %.0f ms after the restore | < %d ms |\n"+
		"| largest gap across the failback | %.0f ms (%d lost) | |\n",
		1000/c.IntervalMs, c.From, c.To, c.From, c.RestoreS,
		c.LargestGapMs, c.LostCut, targetGapMs, c.ResumedMs, c.From, c.RelayAloneMs/1000,
		c.FailbackMs, targetFailbackMs, c.FailbackGapMs, c.LostFailback)
	return nil
}

// duration says a window in minutes or seconds.
func duration(s float64) string {
	if s >= 60 && math.Mod(s, 60) < 1 {
		return fmt.Sprintf("%.0f min", s/60)
	}
	return fmt.Sprintf("%.0f s", s)
}

// failoverPlot draws every ping's RTT against when it was sent (log
// scale: direct and relayed RTTs are a millisecond or two, a late reply
// hundreds), losses as crosses along the top, and the cut, the restore and
// the path changes of the pinging node as vertical lines.
func failoverPlot(c FailoverCut, file string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%.0f/s ping from %s to %s across a cut direct path", 1000/c.IntervalMs, c.From, c.To)
	p.X.Label.Text = "s since the cut"
	p.Y.Label.Text = "RTT, ms"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var ok, lost plotter.XYs
	lo, hi := math.Inf(1), 0.0
	for _, s := range c.Pings {
		if !s.Lost && s.RTTMs > 0 {
			ok = append(ok, plotter.XY{X: s.T, Y: s.RTTMs})
			lo, hi = min(lo, s.RTTMs), max(hi, s.RTTMs)
		}
	}
	if len(ok) == 0 {
		lo, hi = 0.1, 1
	}
	lo, top := lo/2, hi*3
	for _, s := range c.Pings {
		if s.Lost {
			lost = append(lost, plotter.XY{X: s.T, Y: top})
		}
	}
	p.Y.Min, p.Y.Max = lo, top*1.5
	if len(ok) > 0 {
		sc, err := plotter.NewScatter(ok)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Radius = vg.Points(1.5)
		p.Add(sc)
		p.Legend.Add("reply", sc)
	}
	if len(lost) > 0 {
		sc, err := plotter.NewScatter(lost)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Shape = draw.CrossGlyph{}
		sc.GlyphStyle.Color = color.RGBA{R: 200, A: 255}
		p.Add(sc)
		p.Legend.Add("lost", sc)
	}
	marks := []mark{
		{"cut", 0, color.RGBA{R: 200, A: 255}, false},
		{"restore", c.RestoreS, color.RGBA{G: 140, A: 255}, false},
	}
	for _, e := range c.Events {
		if e.Node == c.From {
			marks = append(marks, mark{c.From + " → " + e.To, e.T, pathColor(e.To), true})
		}
	}
	seen := map[string]bool{}
	for _, m := range marks {
		l, err := plotter.NewLine(plotter.XYs{{X: m.x, Y: lo}, {X: m.x, Y: top * 1.5}})
		if err != nil {
			return err
		}
		l.Color = m.rgb
		if m.dash {
			l.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
		}
		p.Add(l)
		if !seen[m.name] {
			seen[m.name] = true
			p.Legend.Add(m.name, l)
		}
	}
	p.Legend.Top, p.Legend.Left = true, true // RTTs lie low, losses follow the cut
	p.Add(plotter.NewGrid())
	return p.Save(plotWidth+2*vg.Inch, plotHeight, file)
}

// mark is a vertical line across the timeline.
type mark struct {
	name string
	x    float64
	rgb  color.RGBA
	dash bool
}

// pathColor tells the paths apart in the legend.
func pathColor(path string) color.RGBA {
	switch path {
	case "direct":
		return color.RGBA{G: 110, B: 220, A: 255}
	case "relay":
		return color.RGBA{R: 230, G: 140, A: 255}
	}
	return color.RGBA{R: 120, G: 120, B: 120, A: 255}
}
