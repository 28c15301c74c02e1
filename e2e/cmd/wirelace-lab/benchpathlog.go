package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wirelace/wirelace/e2e/benchreport"
)

// pathEvent is one "path changed" line of a daemon's log: the daemon logs
// every change of a peer's path with the time it decided it, so the log
// is exact where polling the status would miss a short flap.
type pathEvent struct {
	At       time.Time
	Node     string // whose log
	Peer     string
	From, To string
	Reason   string
}

// report is e as the report has it, its time in s since t0.
func (e pathEvent) report(t0 time.Time) benchreport.PathEvent {
	return benchreport.PathEvent{T: e.At.Sub(t0).Seconds(), Node: e.Node, Peer: e.Peer, From: e.From, To: e.To, Reason: e.Reason}
}

// pathEvents reads node's path changes logged in [from, to] from its log
// file.
func pathEvents(logPath, node string, from, to time.Time) ([]pathEvent, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s's log: %w", node, err)
	}
	defer f.Close()
	all, err := parsePathEvents(f, node)
	if err != nil {
		return nil, fmt.Errorf("%s's log: %w", node, err)
	}
	var out []pathEvent
	for _, e := range all {
		if !e.At.Before(from) && !e.At.After(to) {
			out = append(out, e)
		}
	}
	return out, nil
}

// parsePathEvents picks the path changes out of a log in log/slog's text
// format:
//
//	time=2026-11-30T14:50:01.123Z level=INFO msg="path changed" peer=pub from=direct to=direct+relay addr=… reason="…"
func parsePathEvents(r io.Reader, node string) ([]pathEvent, error) {
	var out []pathEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20) // debug lines can be long
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="path changed"`) {
			continue
		}
		f := logFields(line)
		at, err := time.Parse(time.RFC3339Nano, f["time"])
		if err != nil || f["peer"] == "" {
			continue
		}
		out = append(out, pathEvent{At: at, Node: node, Peer: f["peer"], From: f["from"], To: f["to"], Reason: f["reason"]})
	}
	return out, sc.Err()
}

// logFields splits a log/slog text line into its key=value pairs; values
// with spaces or quotes are quoted Go strings.
func logFields(line string) map[string]string {
	out := map[string]string{}
	for {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \"") {
			return out
		}
		v := rest
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return out
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		out[k] = v
		line = rest
	}
}
