package benchreport

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// The pictures' size.
const (
	plotWidth  = 6 * vg.Inch
	plotHeight = 3.5 * vg.Inch
)

// throughputPlot draws one bar per path (the mean) with each round as a
// point over it.
func throughputPlot(t Throughput, file string) error {
	p := plot.New()
	p.Title.Text = "TCP throughput through lace0"
	p.Y.Label.Text = "Gbit/s"
	p.Y.Min = 0
	var means plotter.Values
	var names []string
	rounds := plotter.XYs{}
	for i, path := range t.Paths {
		means = append(means, path.Gbps)
		names = append(names, path.Name)
		for _, g := range path.RoundsGbps {
			rounds = append(rounds, plotter.XY{X: float64(i), Y: g})
		}
	}
	bars, err := plotter.NewBarChart(means, vg.Points(40))
	if err != nil {
		return err
	}
	p.Add(bars)
	if len(rounds) > 0 {
		s, err := plotter.NewScatter(rounds)
		if err != nil {
			return err
		}
		p.Add(s)
		p.Legend.Add("rounds", s)
	}
	p.NominalX(names...)
	return p.Save(plotWidth, plotHeight, file)
}

// firstPacketPlot draws each trial's time to the first answered ping.
func firstPacketPlot(f FirstPacket, file string) error {
	p := plot.New()
	p.Title.Text = "First ping of a new relay-only pair"
	p.X.Label.Text = "pair"
	p.Y.Label.Text = "ms after both daemons were ready"
	p.Y.Min = 0
	pts := make(plotter.XYs, len(f.Ms))
	for i, ms := range f.Ms {
		pts[i] = plotter.XY{X: float64(i), Y: ms}
	}
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	p.Add(s, plotter.NewGrid())
	return p.Save(plotWidth, plotHeight, file)
}

// cniPlot draws every ADD's latency, one column per plugin and number of
// peers.
func cniPlot(c CNIAdd, file string) error {
	p := plot.New()
	p.Title.Text = "CNI ADD latency"
	p.Y.Label.Text = "ms"
	p.Y.Min = 0
	var names []string
	pts := plotter.XYs{}
	for i, r := range c.Runs {
		names = append(names, fmt.Sprintf("%s, %d peers", r.Plugin, r.Peers))
		for _, ms := range r.Ms {
			pts = append(pts, plotter.XY{X: float64(i), Y: ms})
		}
	}
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	p.Add(s, plotter.NewGrid())
	p.NominalX(names...)
	return p.Save(plotWidth+2*vg.Inch, plotHeight, file)
}

// scalePlots draws join latency and RSS against the number of nodes.
func scalePlots(sc []Scale, dir string) error {
	join := perNodes("One more node: MeshNode created to route installed", "ms")
	rss := perNodes("Daemon RSS, idle", "MiB")
	p50, maxes, mem := plotter.XYs{}, plotter.XYs{}, plotter.XYs{}
	for _, s := range sc {
		p50 = append(p50, plotter.XY{X: float64(s.Nodes), Y: s.JoinP50Ms})
		maxes = append(maxes, plotter.XY{X: float64(s.Nodes), Y: s.JoinMaxMs})
		mem = append(mem, plotter.XY{X: float64(s.Nodes), Y: s.RSSMiB})
	}
	for _, l := range []struct {
		p    *plot.Plot
		name string
		xys  plotter.XYs
		dash bool
	}{{join, "p50", p50, false}, {join, "max", maxes, true}, {rss, "RSS", mem, false}} {
		line, points, err := plotter.NewLinePoints(l.xys)
		if err != nil {
			return fmt.Errorf("scale plot: %w", err)
		}
		if l.dash {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		l.p.Add(line, points)
		l.p.Legend.Add(l.name, line, points)
	}
	if err := join.Save(plotWidth, plotHeight, dir+"/scale-join.svg"); err != nil {
		return err
	}
	return rss.Save(plotWidth, plotHeight, dir+"/scale-rss.svg")
}

// perNodes is a plot of a quantity against the number of nodes (log
// scale), from zero.
func perNodes(title, unit string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "nodes"
	p.Y.Label.Text = unit
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min = 0
	return p
}
