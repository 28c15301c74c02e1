package main

import (
	"strings"
	"testing"
	"time"

	"github.com/wirelace/wirelace/e2e/lab"
)

func TestParsePathEvents(t *testing.T) {
	log := strings.Join([]string{
		`time=2026-11-30T14:50:00.100Z level=DEBUG msg="probe sent" peer=pub to=198.18.0.3:51820`,
		`time=2026-11-30T14:50:01.123Z level=INFO msg="path changed" peer=pub from=direct to=direct+relay addr=198.18.0.3:51820 reason="direct+relay: 198.18.0.3:51820 unconfirmed for 0.4s, sending on both paths"`,
		`wireguard-go noise without fields`,
		`time=2026-11-30T14:50:04.5Z level=INFO msg="path changed" peer=sym from=direct+relay to=relay addr="" reason="relay: no \"pong\" in 3s"`,
	}, "\n")
	got, err := parsePathEvents(strings.NewReader(log), "cone")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("events %+v, want the two path changes", got)
	}
	want0 := pathEvent{At: time.Date(2026, 11, 30, 14, 50, 1, 123e6, time.UTC), Node: "cone", Peer: "pub", From: "direct", To: "direct+relay"}
	if !got[0].At.Equal(want0.At) || got[0].Peer != want0.Peer || got[0].From != want0.From || got[0].To != want0.To || got[0].Node != "cone" {
		t.Errorf("first event %+v, want %+v", got[0], want0)
	}
	if got[1].Peer != "sym" || got[1].To != "relay" {
		t.Errorf("second event %+v: quoted values with escaped quotes must not end the line early", got[1])
	}
}

// A cut: replies stop, four requests are lost, replies resume through the
// relay; after the restore one more is lost and the pair goes direct.
func TestAnalyseCut(t *testing.T) {
	cut := time.Unix(1000, 0)
	at := func(s float64) time.Time { return cut.Add(time.Duration(s * float64(time.Second))) }
	ok := func(seq int, sent float64, rttMs float64) lab.Ping {
		return lab.Ping{Seq: seq, Sent: at(sent), RTT: time.Duration(rttMs * float64(time.Millisecond))}
	}
	lost := func(seq int, sent float64) lab.Ping { return lab.Ping{Seq: seq, Sent: at(sent), Lost: true} }
	pings := []lab.Ping{
		ok(1, -0.10, 0.5), ok(2, -0.05, 0.5),
		lost(3, 0.00), lost(4, 0.05), lost(5, 0.10), lost(6, 0.15),
		ok(7, 0.20, 1.5), // through the relay from here
	}
	for seq := 8; seq < 100; seq++ { // until the restore
		pings = append(pings, ok(seq, 0.20+float64(seq-7)*0.05, 1.5))
	}
	pings = append(pings, ok(100, 5.00, 1.5), lost(101, 5.05), ok(102, 5.10, 0.5))
	restore := at(5.0)
	events := []pathEvent{
		{At: at(3.5), Node: "cone", Peer: "pub", From: "direct+relay", To: "relay"},
		{At: at(0.30), Node: "cone", Peer: "pub", From: "direct", To: "direct+relay"},
		{At: at(0.40), Node: "pub", Peer: "cone", From: "direct", To: "direct+relay"},
		{At: at(3.6), Node: "pub", Peer: "cone", From: "direct+relay", To: "relay"},
		{At: at(5.6), Node: "cone", Peer: "pub", From: "relay", To: "direct"},
		{At: at(6.2), Node: "pub", Peer: "cone", From: "relay", To: "direct"},
	}
	c := analyseCut(pings, events, "cone", "pub", cut, restore)
	checks := []struct {
		what      string
		got, want float64
	}{
		{"lost before the restore", float64(c.LostCut), 4},
		{"lost after the restore", float64(c.LostFailback), 1},
		// last direct reply at -0.0495, first relayed one at 0.2015
		{"largest gap across the cut", c.LargestGapMs, 251},
		{"first reply to a ping sent after the cut", c.ResumedMs, 201.5},
		{"relay alone", c.RelayAloneMs, 3500},
		{"failback (the later side)", c.FailbackMs, 1200},
		// 5.0015 → 5.1005
		{"gap across the failback", c.FailbackGapMs, 99},
		{"restore", c.RestoreS, 5},
	}
	for _, ch := range checks {
		if d := ch.got - ch.want; d > 0.01 || d < -0.01 {
			t.Errorf("%s: %v, want %v", ch.what, ch.got, ch.want)
		}
	}
	if len(c.Pings) != len(pings) || c.Pings[2].T != 0 || !c.Pings[2].Lost || c.Pings[0].RTTMs != 0.5 {
		t.Errorf("samples %+v do not follow the pings", c.Pings)
	}
	if len(c.Events) != len(events) || c.Events[0].T != 0.3 {
		t.Errorf("events %+v, want every event in time order, relative to the cut", c.Events)
	}
}
