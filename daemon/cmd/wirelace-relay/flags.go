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
	idleTimeout   time.Duration
	logLevel      slog.Level
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
	fs.DurationVar(&o.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "close a client that sent nothing for this long")
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
	if o.queue < 1 {
		return o, fmt.Errorf("--queue %d: must be at least 1", o.queue)
	}
	if o.idleTimeout <= 0 {
		return o, fmt.Errorf("--idle-timeout %v: must be positive", o.idleTimeout)
	}
	return o, nil
}
