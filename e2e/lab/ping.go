package lab

import (
	"bufio"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Ping is one echo request of a ping run and what became of it.
type Ping struct {
	Seq  int
	Sent time.Time
	// RTT is the round trip of the first reply; zero when Lost.
	RTT  time.Duration
	Lost bool
}

// Arrived is when the reply came (zero when lost).
func (p Ping) Arrived() time.Time {
	if p.Lost {
		return time.Time{}
	}
	return p.Sent.Add(p.RTT)
}

// Pinger runs `ping -n -D -O` in a network namespace and keeps the outcome
// of every sequence number: -D stamps each line, -O reports a request
// still unanswered when the next one goes out, so losses are seen as they
// happen rather than only counted at the end.
type Pinger struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *pingLog
}

// StartPinger pings ip from netns every interval until Stop.
func StartPinger(netns, ip string, interval time.Duration) (*Pinger, error) {
	cmd := exec.Command("ip", "netns", "exec", netns, "ping", "-n", "-D", "-O",
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64), "-W", "1", ip)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ping %s from %s: %w", ip, netns, err)
	}
	p := &Pinger{cmd: cmd, done: make(chan struct{}), log: newPingLog(interval)}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.log.add(sc.Text())
		}
	}()
	return p, nil
}

// Pings returns what is known so far, in sequence order.
func (p *Pinger) Pings() []Ping { return p.log.pings() }

// Stop ends the run and returns every request's outcome, in sequence
// order. The last requests, sent too recently to be judged, are left out.
func (p *Pinger) Stop() []Ping {
	p.cmd.Process.Kill()
	<-p.done
	p.cmd.Wait()
	return p.log.pings()
}

// The lines of `ping -D -O` that matter:
//
//	[1764513000.123456] 64 bytes from 10.244.1.2: icmp_seq=12 ttl=62 time=0.512 ms
//	[1764513000.173456] no answer yet for icmp_seq=13
var (
	pingReplyLine  = regexp.MustCompile(`^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+) .*time=([\d.]+) ms`)
	pingNoAnswerLn = regexp.MustCompile(`^\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)`)
)

// pingLog folds ping's lines into one outcome per request.
type pingLog struct {
	interval time.Duration
	mu       sync.Mutex
	bySeq    map[int]*Ping
	// base and last unwrap icmp_seq, which is 16 bits.
	base, last int
}

func newPingLog(interval time.Duration) *pingLog {
	return &pingLog{interval: interval, bySeq: map[int]*Ping{}}
}

// add takes one line of output. A reply is stamped when it arrives, so it
// was sent RTT earlier; "no answer yet" is printed as the next request
// goes out, one interval after the one it is about. A reply that comes
// after its "no answer yet" still counts (a late reply is no loss).
func (l *pingLog) add(line string) {
	reply := true
	m := pingReplyLine.FindStringSubmatch(line)
	if m == nil {
		reply = false
		if m = pingNoAnswerLn.FindStringSubmatch(line); m == nil {
			return
		}
	}
	ts, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return
	}
	at := time.Unix(0, int64(ts*1e9))
	raw, _ := strconv.Atoi(m[2])
	l.mu.Lock()
	defer l.mu.Unlock()
	seq := l.unwrap(raw)
	old := l.bySeq[seq]
	switch {
	case reply && (old == nil || old.Lost):
		ms, _ := strconv.ParseFloat(m[3], 64)
		rtt := time.Duration(ms * float64(time.Millisecond))
		l.bySeq[seq] = &Ping{Seq: seq, Sent: at.Add(-rtt), RTT: rtt}
	case !reply && old == nil:
		l.bySeq[seq] = &Ping{Seq: seq, Sent: at.Add(-l.interval), Lost: true}
	}
}

// unwrap turns a 16-bit icmp_seq into a running count. Callers hold mu.
func (l *pingLog) unwrap(raw int) int {
	seq := l.base + raw
	switch {
	case seq < l.last-1<<15:
		l.base += 1 << 16
		seq += 1 << 16
	case seq > l.last+1<<15 && l.base > 0:
		seq -= 1 << 16 // a late line from before the wrap
	}
	l.last = max(l.last, seq)
	return seq
}

func (l *pingLog) pings() []Ping {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Ping, 0, len(l.bySeq))
	for _, p := range l.bySeq {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Ping) int { return a.Seq - b.Seq })
	return out
}
