package server

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logLimiter lets through at most one log line per interval for each
// reason, and counts the lines it held back so that the next one can say
// how many. Refusals are what a flood produces, one per connection: logged
// one by one they would cost more than the refusal itself and bury
// everything else in the log. The metrics still count every one.
type logLimiter struct {
	interval time.Duration

	mu       sync.Mutex
	byReason map[string]*logWindow // keyed by fixed reason constants, so bounded
}

type logWindow struct {
	last       time.Time
	suppressed int
}

func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, byReason: make(map[string]*logWindow)}
}

// allow reports whether a line for reason may be logged now and, if so, how
// many were suppressed since the last one.
func (l *logLimiter) allow(reason string, now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.byReason[reason]
	if w == nil {
		w = &logWindow{}
		l.byReason[reason] = w
	} else if now.Sub(w.last) < l.interval {
		w.suppressed++
		return 0, false
	}
	suppressed, w.suppressed, w.last = w.suppressed, 0, now
	return suppressed, true
}

// log writes msg at level unless a line for reason went out less than an
// interval ago. It checks the level first, so a refusal logged at a level
// the handler drops costs no lock.
func (l *logLimiter) log(log *slog.Logger, level slog.Level, reason, msg string, args ...any) {
	ctx := context.Background()
	if !log.Enabled(ctx, level) {
		return
	}
	n, ok := l.allow(reason, time.Now())
	if !ok {
		return
	}
	args = append(args, "reason", reason)
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(ctx, level, msg, args...)
}
