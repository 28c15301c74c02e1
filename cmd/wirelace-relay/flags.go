package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/wirelace/wirelace/internal/cli"
	"github.com/wirelace/wirelace/relay/protocol"
	"github.com/wirelace/wirelace/relay/server"
)

// options are the relay's command-line settings.
type options struct {
	listen        string
	tlsCert       string
	tlsKey        string
	stunListen    string
	stunAltListen string
	kubeconfig    string
	metricsListen string
	rate          float64 // bytes per second; server.Unlimited for none
	burst         int
	queue         int
	queueBytes    int
	idleTimeout   time.Duration
	logLevel      slog.Level

	maxSessions        int
	maxHandshakes      int
	maxHandshakesPerIP int
	refusalLogInterval time.Duration
}

// byteSize is a flag holding a byte count in Kubernetes quantity notation
// (100M, 4Mi, 1G), the notation operators already use in manifests.
type byteSize struct{ v int64 }

func (b *byteSize) String() string {
	format := resource.DecimalSI
	if b.v%1024 == 0 {
		format = resource.BinarySI
	}
	return resource.NewQuantity(b.v, format).String()
}

func (b *byteSize) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("want a byte count such as 100M or 4Mi")
	}
	if q.Sign() < 0 {
		return errors.New("must not be negative")
	}
	b.v = q.Value()
	return nil
}

// parseFlags parses args into options and checks them, so that every mistake
// is one line naming the flag, before anything is opened.
func parseFlags(args []string) (options, error) {
	o := options{}
	rate := byteSize{v: int64(server.DefaultRate)}
	burst := byteSize{v: server.DefaultBurst}
	queueBytes := byteSize{v: server.DefaultQueueBytes}
	fs := flag.NewFlagSet("wirelace-relay", flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", ":8443", "TCP address for relay clients")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key, relay clients connect over TLS")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&o.stunListen, "stun-listen", ":3478", "UDP address of the STUN server; empty disables it")
	fs.StringVar(&o.stunAltListen, "stun-alt-listen", "", "second UDP address (another IP and/or port) for RFC 5780 NAT behaviour discovery; needs specific IPs in both STUN addresses")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster credentials")
	fs.StringVar(&o.metricsListen, "metrics-listen", ":9090", "HTTP address for /metrics, /healthz and /readyz; empty disables it")
	fs.Var(&rate, "rate", "per-client send rate limit in bytes per second (e.g. 100M, 1Gi); 0 for none")
	fs.Var(&burst, "burst", "per-client burst in bytes (e.g. 4Mi)")
	fs.IntVar(&o.queue, "queue", server.DefaultQueueDepth, "per-client send queue length in packets")
	fs.Var(&queueBytes, "queue-bytes", fmt.Sprintf("per-client send queue limit in bytes of buffer memory (e.g. 1Mi), at least one maximum datagram (%d bytes); the worst case for all queues together is this times --max-sessions", protocol.MaxPacketLen))
	fs.DurationVar(&o.idleTimeout, "idle-timeout", server.DefaultIdleTimeout,
		fmt.Sprintf("close a client that sent nothing for this long; between %v and %v, the range clients accept", protocol.MinIdleTimeout, protocol.MaxIdleTimeout))
	fs.IntVar(&o.maxSessions, "max-sessions", server.DefaultMaxSessions, "most authenticated clients at once; a new node beyond it is refused (one already connected may always reconnect)")
	fs.IntVar(&o.maxHandshakes, "max-handshakes", server.DefaultMaxHandshakes, "most connections not yet authenticated at once; more are closed as soon as they are accepted")
	fs.IntVar(&o.maxHandshakesPerIP, "max-handshakes-per-ip", server.DefaultMaxHandshakesPerIP, "most connections not yet authenticated at once from one IPv4 address or IPv6 /64; raise it for many nodes behind one NAT")
	fs.DurationVar(&o.refusalLogInterval, "refusal-log-interval", server.DefaultRefusalLogInterval, "log at most one line per this interval for each kind of refused connection (the metrics count all of them)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := cli.Parse(fs, args, "wirelace-relay", "wirelace-relay relays WireGuard packets between mesh nodes that cannot reach each other directly, and answers STUN."); err != nil {
		return o, err
	}
	var err error
	if o.logLevel, err = cli.LogLevel(*logLevel); err != nil {
		return o, err
	}
	if o.listen == "" {
		return o, errors.New("--listen must not be empty")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return o, errors.New("--tls-cert and --tls-key go together: give both or neither")
	}
	if o.stunAltListen != "" && o.stunListen == "" {
		return o, errors.New("--stun-alt-listen needs --stun-listen")
	}
	o.rate, o.burst = float64(rate.v), int(burst.v)
	if rate.v == 0 {
		o.rate = server.Unlimited
	} else if o.burst < protocol.MaxFrameLen {
		return o, fmt.Errorf("--burst %s is below the largest relay frame (%d bytes), which could then never pass", burst.String(), protocol.MaxFrameLen)
	}
	for _, f := range []struct {
		name  string
		value int
	}{{"--queue", o.queue}, {"--max-sessions", o.maxSessions}, {"--max-handshakes", o.maxHandshakes}, {"--max-handshakes-per-ip", o.maxHandshakesPerIP}} {
		if f.value < 1 {
			return o, fmt.Errorf("%s %d: must be at least 1", f.name, f.value)
		}
	}
	if o.queueBytes = int(queueBytes.v); o.queueBytes < protocol.MaxPacketLen {
		return o, fmt.Errorf("--queue-bytes %s is below the largest datagram (%d bytes), which could then never be queued", queueBytes.String(), protocol.MaxPacketLen)
	}
	if o.idleTimeout < protocol.MinIdleTimeout || o.idleTimeout > protocol.MaxIdleTimeout {
		return o, fmt.Errorf("--idle-timeout %v: must be between %v and %v, or clients would not follow it", o.idleTimeout, protocol.MinIdleTimeout, protocol.MaxIdleTimeout)
	}
	if o.refusalLogInterval <= 0 {
		return o, fmt.Errorf("--refusal-log-interval %v: must be positive", o.refusalLogInterval)
	}
	return o, nil
}
