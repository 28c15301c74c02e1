package main

import (
	"reflect"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
)

// keep holds allocHeapBuffers' buffers live until the profile is written.
var keep [][]byte

//go:noinline
func allocHeapBuffers(n int) {
	for range n {
		keep = append(keep, make([]byte, 64<<10))
	}
}

// TestParseHeapProfile reads this process's own heap profile, as the
// daemon serves it: 1000 buffers of 64 KiB allocated in one function must
// be found there, scaled up from the samples, and within the total.
func TestParseHeapProfile(t *testing.T) {
	allocHeapBuffers(1000)
	defer func() { keep = nil }()
	runtime.GC()
	var b strings.Builder
	if err := pprof.Lookup("heap").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	fn := runtime.FuncForPC(reflect.ValueOf(allocHeapBuffers).Pointer()).Name()
	total, matched, err := parseHeapProfile(b.String(), fn)
	if err != nil {
		t.Fatal(err)
	}
	want := 1000.0 * (64 << 10)
	// Sampled at one per 512 KiB on average, 1000 buffers of 64 KiB give
	// about 120 samples: within 35% is four standard deviations.
	if matched < 0.65*want || matched > 1.35*want {
		t.Errorf("matched %.1f MiB, want about %.1f MiB", matched/(1<<20), want/(1<<20))
	}
	if total < matched {
		t.Errorf("total %.1f MiB below matched %.1f MiB", total/(1<<20), matched/(1<<20))
	}
	if _, m, _ := parseHeapProfile(b.String(), "no/such.function"); m != 0 {
		t.Errorf("an absent function matched %.0f bytes", m)
	}
}

func TestParseHeapProfileRejects(t *testing.T) {
	for _, text := range []string{
		"",
		"goroutine profile: total 3\n",
		"heap profile: 1: 2 [3: 4] @ heap/0\n",
		"heap profile: 1: 2 [3: 4] @ heap/1048576\nnonsense\n",
	} {
		if _, _, err := parseHeapProfile(text, "x"); err == nil {
			t.Errorf("%q: no error", text)
		}
	}
}
