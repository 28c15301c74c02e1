package cniinstall

import (
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// at is t0 plus s seconds.
func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestGuardBacksOffThenStops(t *testing.T) {
	g := NewGuard(DefaultPolicy())
	now := t0
	var waits []time.Duration
	// A primary that removes Wirelace the moment it is back.
	for i := 0; i < 100 && !g.Conflict(); i++ {
		d := g.Missing(now)
		switch d.Action {
		case Wait:
			waits = append(waits, d.After)
			now = now.Add(d.After)
		case Write:
			g.Reinserted(now)
		}
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	if !g.Conflict() || g.Reinserts() != 5 {
		t.Fatalf("conflict %v after %d reinserts, want a conflict after 5", g.Conflict(), g.Reinserts())
	}
	if d := g.Missing(now.Add(time.Hour)); d.Action != Stop {
		t.Errorf("after a conflict Missing = %v, want stop for good", d.Action)
	}
}

func TestGuardSteps(t *testing.T) {
	p := Policy{MaxReinserts: 3, Window: time.Minute, BaseBackoff: time.Second, MaxBackoff: 3 * time.Second}
	type step struct {
		at   float64
		op   string // "missing", "wrote", "present"
		want Action
		wait time.Duration
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{{
		name: "waits the backoff, counted from when the removal was seen",
		steps: []step{
			{0, "missing", Wait, time.Second},
			{0.4, "missing", Wait, 600 * time.Millisecond},
			{1, "missing", Write, 0},
		},
	}, {
		name: "a removal undone during the backoff needs no write",
		steps: []step{
			{0, "missing", Wait, time.Second},
			{0.5, "present", 0, 0},
			{10, "missing", Wait, time.Second}, // a fresh backoff, not the old due time
		},
	}, {
		name: "backoff doubles, capped",
		steps: []step{
			{0, "wrote", 0, 0},
			{1, "missing", Wait, 2 * time.Second},
			{3, "wrote", 0, 0},
			{4, "missing", Wait, 3 * time.Second}, // 4 s capped at 3
		},
	}, {
		name: "re-inserts spread over more than the window are no conflict",
		steps: []step{
			{0, "wrote", 0, 0},
			{30, "wrote", 0, 0},
			{61, "wrote", 0, 0}, // the first has left the window
			{62, "missing", Wait, 3 * time.Second},
			{65, "missing", Write, 0},
			{65, "wrote", 0, 0},
			{66, "missing", Stop, 0}, // 30, 61, 65: three within a minute
		},
	}, {
		name: "the backoff shrinks again as old re-inserts leave the window",
		steps: []step{
			{0, "wrote", 0, 0},
			{1, "wrote", 0, 0},
			{200, "missing", Wait, time.Second},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGuard(p)
			for i, s := range tc.steps {
				switch s.op {
				case "wrote":
					g.Reinserted(at(s.at))
				case "present":
					g.Present()
				case "missing":
					d := g.Missing(at(s.at))
					if d.Action != s.want || d.After != s.wait {
						t.Fatalf("step %d at %vs: %v after %v, want %v after %v", i, s.at, d.Action, d.After, s.want, s.wait)
					}
				}
			}
		})
	}
}
