package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wirelace/wirelace/e2e/benchreport"
	"github.com/wirelace/wirelace/e2e/lab"
)

// memIdle is how long the WireGuard processes rest after the transfers
// before their memory is read again: memory should be back near its
// resting level within a minute of the traffic stopping.
const memIdle = 60 * time.Second

// memWatch follows the resident set of the WireGuard processes of the
// throughput runs: Wirelace's daemons and stock wireguard-go.
type memWatch struct {
	procs []benchreport.ProcessMemory
	pids  []int
	// nodes are the daemons among them, whose Go heap is printed too: it
	// tells memory in use from memory the runtime holds but does not use.
	nodes map[int]*lab.Node
}

// watchMemory reads each process's resting RSS now.
func watchMemory(names []string, pids []int, nodes ...*lab.Node) (*memWatch, error) {
	w := &memWatch{pids: pids, nodes: map[int]*lab.Node{}}
	for _, n := range nodes {
		w.nodes[n.PID()] = n
	}
	for i, pid := range pids {
		rss, err := procStatusMiB(pid, "VmRSS")
		if err != nil {
			return nil, err
		}
		w.procs = append(w.procs, benchreport.ProcessMemory{Name: names[i], BeforeMiB: rss})
	}
	return w, nil
}

// afterRun records the RSS of those of the processes that carried a run.
func (w *memWatch) afterRun(ran []int) {
	for i, pid := range w.pids {
		for _, r := range ran {
			if r != pid {
				continue
			}
			if rss, err := procStatusMiB(pid, "VmRSS"); err == nil {
				w.procs[i].AfterMiB = max(w.procs[i].AfterMiB, rss)
			}
		}
	}
}

// profileHeap records where the daemons' heap is, by their heap profiles.
func (w *memWatch) profileHeap(ctx context.Context) error {
	for i, pid := range w.pids {
		n := w.nodes[pid]
		if n == nil {
			continue
		}
		h, err := daemonHeap(ctx, n)
		if err != nil {
			return err
		}
		w.procs[i].HeapMiB, w.procs[i].PoolsMiB = h.TotalMiB, h.PoolsMiB
		fmt.Printf("  %-20s heap profile after the transfer: %4.0f MiB in use, %4.0f MiB of it wireguard-go's packet pools\n",
			w.procs[i].Name, h.TotalMiB, h.PoolsMiB)
	}
	return nil
}

// rest waits idle without traffic, then reads every process's RSS and peak,
// and prints what it found.
func (w *memWatch) rest(ctx context.Context, idle time.Duration) (benchreport.Memory, error) {
	w.printHeap(ctx, "right after the transfers")
	select {
	case <-ctx.Done():
		return benchreport.Memory{}, ctx.Err()
	case <-time.After(idle):
	}
	for i, pid := range w.pids {
		var err error
		if w.procs[i].IdleMiB, err = procStatusMiB(pid, "VmRSS"); err != nil {
			return benchreport.Memory{}, err
		}
		if w.procs[i].PeakMiB, err = procStatusMiB(pid, "VmHWM"); err != nil {
			return benchreport.Memory{}, err
		}
	}
	w.printHeap(ctx, fmt.Sprintf("after %s idle", idle))
	for _, p := range w.procs {
		fmt.Printf("  %-20s RSS at rest %4.0f MiB, after transfer %4.0f MiB, peak %4.0f MiB, after %s idle %4.0f MiB\n",
			p.Name, p.BeforeMiB, p.AfterMiB, p.PeakMiB, idle, p.IdleMiB)
	}
	return benchreport.Memory{IdleSeconds: idle.Seconds(), Processes: w.procs}, nil
}

// printHeap prints, for each daemon, the Go heap it uses and what the
// runtime holds besides (free, or already returned to the OS).
func (w *memWatch) printHeap(ctx context.Context, when string) {
	for i, pid := range w.pids {
		n := w.nodes[pid]
		if n == nil {
			continue
		}
		text, err := n.Metrics(ctx)
		if err != nil {
			continue
		}
		v := func(name string) float64 {
			m, _ := lab.MetricValues(text, name)
			return m[""] / (1 << 20)
		}
		trims, _ := lab.MetricValues(text, "wirelace_memory_trims_total")
		fmt.Printf("  %-20s %s: Go heap in use %4.0f MiB, idle %4.0f MiB of which returned to the OS %4.0f MiB; %.0f trims so far\n",
			w.procs[i].Name, when, v("go_memstats_heap_inuse_bytes"), v("go_memstats_heap_idle_bytes"), v("go_memstats_heap_released_bytes"), trims[""])
	}
}

// procStatusMiB reads a size field (VmRSS, VmHWM) of /proc/<pid>/status.
func procStatusMiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status %s: %w", pid, field, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}
