package lab

import (
	"fmt"
	"testing"
	"time"
)

func TestPingLog(t *testing.T) {
	const interval = 50 * time.Millisecond
	l := newPingLog(interval)
	for _, line := range []string{
		"PING 10.244.1.2 (10.244.1.2) 56(84) bytes of data.",
		"[1000.000500] 64 bytes from 10.244.1.2: icmp_seq=1 ttl=62 time=0.500 ms",
		"[1000.100000] no answer yet for icmp_seq=2",
		"[1000.150000] no answer yet for icmp_seq=3",
		// seq 3 answered late: a late reply is no loss.
		"[1000.400000] 64 bytes from 10.244.1.2: icmp_seq=3 ttl=62 time=300 ms",
		"[1000.400100] 64 bytes from 10.244.1.2: icmp_seq=3 ttl=62 time=300 ms (DUP!)",
	} {
		l.add(line)
	}
	got := l.pings()
	if len(got) != 3 {
		t.Fatalf("pings %+v, want seqs 1, 2, 3", got)
	}
	if p := got[0]; p.Lost || p.RTT != 500*time.Microsecond || !p.Arrived().Equal(time.Unix(1000, 500000)) {
		t.Errorf("seq 1: %+v, want a 0.5 ms reply arriving at 1000.0005", p)
	}
	if p := got[1]; !p.Lost || !p.Sent.Equal(time.Unix(1000, 50000000)) || !p.Arrived().IsZero() {
		t.Errorf("seq 2: %+v, want lost, sent one interval before its no-answer line", p)
	}
	if p := got[2]; p.Lost || p.RTT != 300*time.Millisecond || !p.Sent.Equal(time.Unix(1000, 100000000)) {
		t.Errorf("seq 3: %+v, want a late 300 ms reply, sent at 1000.1", p)
	}
}

// icmp_seq is 16 bits: a long run keeps counting across the wrap.
func TestPingLogSeqWrap(t *testing.T) {
	l := newPingLog(time.Second)
	for i, seq := range []int{65534, 65535, 0, 1} {
		l.add(fmt.Sprintf("[%d.000000] 64 bytes from 10.0.0.1: icmp_seq=%d ttl=64 time=1.00 ms", 2000+i, seq))
	}
	got := l.pings()
	if len(got) != 4 || got[3].Seq-got[0].Seq != 3 {
		t.Fatalf("pings across the wrap: %+v", got)
	}
	for i := 1; i < len(got); i++ {
		if !got[i].Sent.After(got[i-1].Sent) {
			t.Fatalf("out of order after the wrap: %+v", got)
		}
	}
}
