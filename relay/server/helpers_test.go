package server

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/relay/internal/relaytest"
)

// fakeMembers is a Members the tests edit directly.
type fakeMembers struct {
	mu sync.Mutex
	m  map[wgtypes.Key]wgtypes.Key
}

func newFakeMembers() *fakeMembers {
	return &fakeMembers{m: make(map[wgtypes.Key]wgtypes.Key)}
}

func (f *fakeMembers) Lookup(k wgtypes.Key) (wgtypes.Key, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ctl, ok := f.m[k]
	return ctl, ok
}

func (f *fakeMembers) set(wg, ctl wgtypes.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[wg] = ctl
}

func (f *fakeMembers) remove(wg wgtypes.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, wg)
}

// node and rawClient are relaytest's, shared with the membership tests.
type (
	node      = relaytest.Node
	rawClient = relaytest.Client
)

// newNode makes a node and, when members is not nil, its MeshNode.
func newNode(t testing.TB, members *fakeMembers) node {
	n := relaytest.NewNode(t)
	if members != nil {
		members.set(n.WG, n.Ctl.PublicKey())
	}
	return n
}

type testServer struct {
	srv  *Server
	addr string
	reg  *prometheus.Registry
	stop func()
}

// startServer runs a Server on a loopback port until the test ends.
func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	if cfg.Logger == nil {
		cfg.Logger = relaytest.Logger(t)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, stop := relaytest.Serve(t, func(ctx context.Context, ln net.Listener) error { return srv.Serve(ctx, ln) })
	return &testServer{srv: srv, addr: addr, reg: reg, stop: stop}
}

// metric returns the value of a counter or gauge, by name and labels.
func (ts *testServer) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// sendFlood sends size-byte packets from c to dst as fast as the relay takes
// them, until the returned stop is called (or the test ends); sent counts
// them.
func sendFlood(t testing.TB, c *rawClient, dst wgtypes.Key, size int) (sent *atomic.Int64, stop func()) {
	sent = new(atomic.Int64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		pkt := make([]byte, size)
		for {
			select {
			case <-done:
				return
			default:
			}
			if c.Send(dst, pkt) != nil {
				return
			}
			sent.Add(1)
		}
	})
	stop = sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
	t.Cleanup(stop)
	return sent, stop
}
