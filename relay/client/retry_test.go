package client

import (
	"errors"
	"testing"
	"time"
)

// A refused node retries sooner than one that lost its connection, and
// both back off, doubling up to maxReconnectDelay; a session that lasted
// resets the back-off.
func TestRetryDelay(t *testing.T) {
	refused := &RefusedError{Addr: "relay:8443", Reason: "not a mesh member"}
	lost := errors.New("connection reset")
	sequence := func(err error, lasted time.Duration) []time.Duration {
		var out []time.Duration
		var d time.Duration
		for range 8 {
			d = retryDelay(d, lasted, err)
			out = append(out, d)
		}
		return out
	}
	for _, c := range []struct {
		name   string
		err    error
		lasted time.Duration
		first  time.Duration
	}{
		{"refused", refused, 0, minRefusedDelay},
		{"connection failed", lost, 0, minReconnectDelay},
		{"session ended", refused, time.Second, minReconnectDelay}, // refused only counts before a session
	} {
		seq := sequence(c.err, c.lasted)
		if seq[0] != c.first {
			t.Errorf("%s: first retry after %v, want %v", c.name, seq[0], c.first)
		}
		for i := 1; i < len(seq); i++ {
			if seq[i] != min(2*seq[i-1], maxReconnectDelay) {
				t.Errorf("%s: back-off %v does not double up to %v", c.name, seq, maxReconnectDelay)
				break
			}
		}
		if seq[len(seq)-1] != maxReconnectDelay {
			t.Errorf("%s: back-off %v never reaches %v", c.name, seq, maxReconnectDelay)
		}
	}
	if d := retryDelay(maxReconnectDelay, stableAfter, lost); d != minReconnectDelay {
		t.Errorf("after a stable session: retry after %v, want %v", d, minReconnectDelay)
	}
}
