package benchreport

import (
	"fmt"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Memory is what the WireGuard processes hold around bulk traffic: Wirelace's
// daemons and stock wireguard-go, measured in the same run as Throughput.
type Memory struct {
	// IdleSeconds is how long the processes idled before IdleMiB was read.
	IdleSeconds float64         `json:"idle_seconds"`
	Processes   []ProcessMemory `json:"processes"`
}

// ProcessMemory is one process's resident set at four moments.
type ProcessMemory struct {
	Name string `json:"name"`
	// BeforeMiB: at rest, before the first transfer.
	BeforeMiB float64 `json:"before_mib"`
	// AfterMiB: right after its transfers (the largest over the rounds).
	AfterMiB float64 `json:"after_mib"`
	// PeakMiB: the high-water mark (VmHWM) over the whole run.
	PeakMiB float64 `json:"peak_mib"`
	// IdleMiB: after IdleSeconds without traffic.
	IdleMiB float64 `json:"idle_mib"`
	// HeapMiB is the Go heap in use right after a transfer, by the
	// process's heap profile (Wirelace's daemons only), and PoolsMiB the
	// part of it in wireguard-go's packet pools: where the memory goes.
	HeapMiB  float64 `json:"heap_mib,omitempty"`
	PoolsMiB float64 `json:"pools_mib,omitempty"`
}

// MemoryFile holds Memory.
const MemoryFile = "memory.json"

// memorySection writes the memory part of the report and its picture.
func memorySection(m Memory, md *strings.Builder, file string) error {
	if err := memoryPlot(m, file); err != nil {
		return err
	}
	fmt.Fprintf(md, "\n## Memory around bulk traffic\n\nResident set of each WireGuard process (both ends of the throughput runs above): at rest, right after its transfers, its peak, and after %.0f s without traffic.\n\n![memory](memory.svg)\n\n| process | at rest | after transfer | peak | after %.0f s idle |\n|---|---|---|---|---|\n",
		m.IdleSeconds, m.IdleSeconds)
	for _, p := range m.Processes {
		fmt.Fprintf(md, "| %s | %.0f MiB | %.0f MiB | %.0f MiB | %.0f MiB |\n", p.Name, p.BeforeMiB, p.AfterMiB, p.PeakMiB, p.IdleMiB)
	}
	var where []string
	for _, p := range m.Processes {
		if p.HeapMiB > 0 {
			where = append(where, fmt.Sprintf("%s %.0f MiB in use, %.0f MiB of it (%.0f%%) in wireguard-go's packet pools",
				p.Name, p.HeapMiB, p.PoolsMiB, 100*p.PoolsMiB/p.HeapMiB))
		}
	}
	if len(where) > 0 {
		fmt.Fprintf(md, "\nWhere it goes, by the daemons' heap profiles right after the last direct transfer: %s. wireguard-go takes a 64 KiB buffer for every packet in flight, from pools it leaves unbounded on Linux, so a TCP stream's whole window sits in them; stock wireguard-go grows alike.\n",
			strings.Join(where, "; "))
	}
	return nil
}

// memoryPlot draws, per process, bars for at rest, after transfer and after
// idling, side by side.
func memoryPlot(m Memory, file string) error {
	p := plot.New()
	p.Title.Text = "WireGuard process memory around bulk traffic"
	p.Y.Label.Text = "RSS, MiB"
	p.Y.Min = 0
	var names []string
	series := []struct {
		label string
		value func(ProcessMemory) float64
	}{
		{"at rest", func(p ProcessMemory) float64 { return p.BeforeMiB }},
		{"after transfer", func(p ProcessMemory) float64 { return p.AfterMiB }},
		{fmt.Sprintf("after %.0f s idle", m.IdleSeconds), func(p ProcessMemory) float64 { return p.IdleMiB }},
	}
	for _, proc := range m.Processes {
		names = append(names, proc.Name)
	}
	const width = vg.Length(14)
	for i, s := range series {
		var v plotter.Values
		for _, proc := range m.Processes {
			v = append(v, s.value(proc))
		}
		bars, err := plotter.NewBarChart(v, width)
		if err != nil {
			return err
		}
		bars.Offset = width * vg.Length(i-1)
		bars.Color = plotutil.Color(i)
		p.Add(bars)
		p.Legend.Add(s.label, bars)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	return p.Save(plotWidth, plotHeight, file)
}
