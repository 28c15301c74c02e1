package node

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wirelace/wirelace/api/vocab"
)

// metrics are the daemon's Prometheus metrics. Gauges are read from the
// daemon's status at scrape time (one source of truth with wirelacectl);
// counters are bumped where things happen.
type metrics struct {
	reg         *prometheus.Registry
	pathChanges prometheus.Counter
	pings       prometheus.Counter
	pongs       prometheus.Counter
	memoryTrims prometheus.Counter
	// peerWrites counts peers in UAPI set operations: a change to one
	// node must cost a write of that peer, not of every peer.
	peerWrites prometheus.Counter
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		pathChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wirelace_path_changes_total", Help: "Changes of the path (direct, relay, direct+relay) of any peer.",
		}),
		pings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wirelace_probe_pings_sent_total", Help: "Path probes sent.",
		}),
		pongs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wirelace_probe_pongs_received_total", Help: "Authenticated answers to path probes.",
		}),
		memoryTrims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wirelace_memory_trims_total", Help: "Times the heap a burst of traffic left behind was returned to the OS.",
		}),
		peerWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wirelace_wireguard_peer_writes_total", Help: "Peers added, changed or removed on the WireGuard device.",
		}),
	}
	// The live heap (marked by the last GC) besides the MemStats gauges:
	// heap in use swings with the GC cycle, the live heap is what peers cost.
	goMetrics := collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)}))
	m.reg.MustRegister(m.pathChanges, m.pings, m.pongs, m.memoryTrims, m.peerWrites, statusCollector{d}, goMetrics)
	return m
}

var (
	descPeers   = prometheus.NewDesc("wirelace_peers", "Peers by the path their packets take now.", []string{"path"}, nil)
	descNAT     = prometheus.NewDesc("wirelace_nat_type", "This node's NAT type as classified by STUN (1 for the current type).", []string{"type"}, nil)
	descRelay   = prometheus.NewDesc("wirelace_relay_connected", "Whether the node is connected to a relay.", []string{"relay"}, nil)
	descReady   = prometheus.NewDesc("wirelace_ready", "Whether the daemon is ready.", nil, nil)
	descPeerRx  = prometheus.NewDesc("wirelace_peer_receive_bytes", "Bytes received from a peer through WireGuard.", []string{"peer"}, nil)
	descPeerTx  = prometheus.NewDesc("wirelace_peer_transmit_bytes", "Bytes sent to a peer through WireGuard.", []string{"peer"}, nil)
	descPeerAge = prometheus.NewDesc("wirelace_peer_handshake_age_seconds", "Seconds since the last WireGuard handshake with a peer.", []string{"peer"}, nil)
)

// statusCollector turns the daemon's status into gauges at scrape time.
type statusCollector struct{ d *Daemon }

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descNAT, descRelay, descReady, descPeerRx, descPeerTx, descPeerAge} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.d.Status(true)
	ready := 0.0
	if s.Ready {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
	if s.NATType != "" {
		ch <- prometheus.MustNewConstMetric(descNAT, prometheus.GaugeValue, 1, s.NATType)
	}
	for _, r := range s.Relays {
		v := 0.0
		if r.Connected {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descRelay, prometheus.GaugeValue, v, r.Addr)
	}
	// Every path is reported, zero included, so a dashboard's series do not
	// come and go.
	byPath := map[string]float64{}
	for _, p := range vocab.Paths() {
		byPath[string(p)] = 0
	}
	for _, p := range s.Peers {
		if p.Path != "" {
			byPath[p.Path]++
		}
		name := p.Node
		if name == "" {
			name = p.PublicKey
		}
		ch <- prometheus.MustNewConstMetric(descPeerRx, prometheus.GaugeValue, float64(p.RxBytes), name)
		ch <- prometheus.MustNewConstMetric(descPeerTx, prometheus.GaugeValue, float64(p.TxBytes), name)
		if p.LastHandshake != nil {
			ch <- prometheus.MustNewConstMetric(descPeerAge, prometheus.GaugeValue, time.Since(*p.LastHandshake).Seconds(), name)
		}
	}
	for path, n := range byPath {
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, n, path)
	}
}

// serve serves /metrics on addr until ctx ends, and Go's /debug/pprof
// with profiling.
func (m *metrics) serve(ctx context.Context, addr string, profiling bool, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	if profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	return nil
}
