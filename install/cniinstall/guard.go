package cniinstall

import "time"

// Policy bounds how hard the installer insists when another agent removes
// Wirelace from the CNI configuration.
type Policy struct {
	// MaxReinserts re-inserts are allowed within Window; needing one more
	// is a conflict, and the installer stops writing.
	MaxReinserts int
	Window       time.Duration
	// The k-th re-insert within Window waits BaseBackoff·2^k after the
	// removal is seen (capped at MaxBackoff): a primary that writes its file
	// in several steps settles first, and a fight slows down before it is
	// called one.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
}

// DefaultPolicy: re-inserts after 0.5 s, 1 s, 2 s, 4 s, 8 s; a sixth within
// two minutes is a conflict. A primary that rewrites its file on every
// change in the dir is caught in about 20 s, after 5 writes.
func DefaultPolicy() Policy {
	return Policy{MaxReinserts: 5, Window: 2 * time.Minute, BaseBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second}
}

// Action is what the Guard allows.
type Action int

const (
	// Write the re-insert now.
	Write Action = iota
	// Wait, then look again: the removal may be undone, or the backoff is
	// not over.
	Wait
	// Stop writing: another agent keeps removing Wirelace.
	Stop
)

func (a Action) String() string {
	return [...]string{"write", "wait", "stop"}[a]
}

// Decision is the Guard's answer; After is how long to wait for Wait.
type Decision struct {
	Action Action
	After  time.Duration
}

// Guard decides when a re-insert may be written. It is pure: every method is
// given the time, so tests drive it with any clock. Not safe for concurrent
// use.
type Guard struct {
	policy    Policy
	recent    []time.Time // re-inserts written within the window
	due       time.Time   // when the pending re-insert may be written
	conflict  bool
	reinserts int // all re-inserts written
}

// NewGuard returns a Guard with policy p.
func NewGuard(p Policy) *Guard { return &Guard{policy: p} }

// Missing is called when Wirelace is found missing at now (after the first
// install): it says whether to write the re-insert, wait, or stop. Once it
// says Stop it always does.
func (g *Guard) Missing(now time.Time) Decision {
	if g.conflict {
		return Decision{Action: Stop}
	}
	g.forget(now)
	if len(g.recent) >= g.policy.MaxReinserts {
		g.conflict = true
		return Decision{Action: Stop}
	}
	if g.due.IsZero() {
		g.due = now.Add(g.backoff())
	}
	if wait := g.due.Sub(now); wait > 0 {
		return Decision{Action: Wait, After: wait}
	}
	return Decision{Action: Write}
}

// Reinserted records a re-insert written at now.
func (g *Guard) Reinserted(now time.Time) {
	g.recent = append(g.recent, now)
	g.reinserts++
	g.due = time.Time{}
}

// Present is called when Wirelace is found in place: a pending re-insert is
// no longer needed.
func (g *Guard) Present() { g.due = time.Time{} }

// Conflict reports whether the Guard has said Stop.
func (g *Guard) Conflict() bool { return g.conflict }

// Reinserts is how many re-inserts were written.
func (g *Guard) Reinserts() int { return g.reinserts }

// Recent is how many re-inserts were written within the window before now.
func (g *Guard) Recent(now time.Time) int {
	g.forget(now)
	return len(g.recent)
}

// forget drops re-inserts older than the window.
func (g *Guard) forget(now time.Time) {
	i := 0
	for i < len(g.recent) && now.Sub(g.recent[i]) >= g.policy.Window {
		i++
	}
	g.recent = g.recent[i:]
}

// backoff is the wait before the next re-insert.
func (g *Guard) backoff() time.Duration {
	d := g.policy.BaseBackoff
	for range g.recent {
		if d >= g.policy.MaxBackoff/2 {
			return g.policy.MaxBackoff
		}
		d *= 2
	}
	return min(d, g.policy.MaxBackoff)
}
