package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/wirelace/wirelace/e2e/lab"
)

// wireguardPools is the function whose allocations are wireguard-go's
// packet pools: a [MaxMessageSize]byte (64 KiB) buffer for every packet in
// flight, and the queue elements that carry them. Its pools are unbounded
// on Linux (PreallocatedBuffersPerPool = 0, "allow for infinite memory
// growth"), so they grow with the packets in flight, which a TCP stream
// through an unqueued path sets to its whole window.
const wireguardPools = "golang.zx2c4.com/wireguard/device.(*Device).PopulatePools"

// heapShare is what a daemon's heap profile says it holds in use: all of
// it, and wireguard-go's packet pools.
type heapShare struct {
	TotalMiB, PoolsMiB float64
}

// daemonHeap fetches n's heap profile after a GC (the daemon serves
// /debug/pprof with --profiling) and attributes it.
func daemonHeap(ctx context.Context, n *lab.Node) (heapShare, error) {
	b, err := n.Debug(ctx, "/debug/pprof/heap?debug=1&gc=1", 30*time.Second)
	if err != nil {
		return heapShare{}, err
	}
	total, pools, err := parseHeapProfile(string(b), wireguardPools)
	if err != nil {
		return heapShare{}, fmt.Errorf("%s heap profile: %w", n.Name, err)
	}
	return heapShare{TotalMiB: total / (1 << 20), PoolsMiB: pools / (1 << 20)}, nil
}

// parseHeapProfile reads a heap profile in runtime/pprof's text form
// (debug=1) and returns the bytes in use, in all and in the records whose
// stack has a function starting with fn, scaled up from the samples as
// pprof does for that form.
//
// The form: a header "heap profile: N: B [N: B] @ heap/<2×rate>", then per
// allocation site "inuseN: inuseB [allocN: allocB] @ pc..." followed by
// "#\tpc\tfunction+off\tfile:line" lines and a blank line; then the
// runtime.MemStats as "# Name = value" lines.
func parseHeapProfile(text, fn string) (total, matched float64, err error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	if !sc.Scan() {
		return 0, 0, fmt.Errorf("empty")
	}
	header := sc.Text()
	_, after, ok := strings.Cut(header, "@ heap/")
	if !strings.HasPrefix(header, "heap profile:") || !ok {
		return 0, 0, fmt.Errorf("not a heap profile: %q", header)
	}
	period, err := strconv.ParseFloat(strings.TrimSpace(after), 64)
	if err != nil || period <= 0 {
		return 0, 0, fmt.Errorf("header %q: bad sampling period", header)
	}
	// The header states twice the sampling rate (see writeHeapInternal).
	rate := period / 2

	cur := -1.0 // the current record's scaled bytes; < 0 outside one
	counted := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			cur = -1
		case strings.HasPrefix(line, "#"):
			if cur >= 0 && !counted && frameIn(line, fn) {
				matched += cur
				counted = true
			}
		default:
			objs, bytes, ok := inuse(line)
			if !ok {
				return 0, 0, fmt.Errorf("bad record %q", line)
			}
			cur = scaleHeapSample(objs, bytes, rate)
			counted = false
			total += cur
		}
	}
	return total, matched, sc.Err()
}

// inuse reads "objs: bytes [allocObjs: allocBytes] @ ...".
func inuse(line string) (objs, bytes float64, ok bool) {
	head, _, ok := strings.Cut(line, "[")
	if !ok {
		return 0, 0, false
	}
	o, b, ok := strings.Cut(head, ":")
	if !ok {
		return 0, 0, false
	}
	objs, err1 := strconv.ParseFloat(strings.TrimSpace(o), 64)
	bytes, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	return objs, bytes, err1 == nil && err2 == nil
}

// frameIn reports whether a "#\tpc\tfunction+off\tfile:line" line is in a
// function starting with fn.
func frameIn(line, fn string) bool {
	f := strings.Fields(line)
	return len(f) >= 3 && strings.HasPrefix(f[2], fn)
}

// scaleHeapSample undoes the sampling of a record of objs objects of bytes
// in all: an object of size s is sampled with probability 1-exp(-s/rate).
// It is pprof's own correction for this form.
func scaleHeapSample(objs, bytes, rate float64) float64 {
	if objs == 0 || bytes == 0 {
		return 0
	}
	if rate <= 1 {
		return bytes
	}
	return bytes / (1 - math.Exp(-(bytes/objs)/rate))
}
