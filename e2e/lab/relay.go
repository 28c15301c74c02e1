package lab

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/wirelace/wirelace/e2e/proc"
)

// Relay is a wirelace-relay on the internet bridge: the relay on TCP and a
// STUN server on UDP with a second address, so clients can test their NAT's
// filtering (RFC 5780).
type Relay struct {
	Name  string
	NetNS string
	// IP is the relay's address; AltIP the STUN server's second one.
	IP, AltIP  netip.Addr
	Port       int
	STUNPort   int
	Kubeconfig string
	LogPath    string

	lab   *Lab
	proc  *proc.Process
	extra []string
}

// AddRelay creates a relay host and starts wirelace-relay on it with the
// lab's flags plus extra. Nodes started afterwards use every relay of the
// lab (--relays, --stun-servers).
func (l *Lab) AddRelay(ctx context.Context, name string, extra ...string) (*Relay, error) {
	r := &Relay{Name: name, NetNS: l.Prefix + "-" + name, Port: 8443, STUNPort: 3478, lab: l, extra: extra}
	r.Kubeconfig = filepath.Join(l.Dir, name+".kubeconfig")
	r.LogPath = filepath.Join(l.Dir, name+".log")
	if _, err := run(ctx, "ip", "netns", "add", r.NetNS); err != nil {
		return nil, err
	}
	l.defer_(func() error { _, err := run(context.Background(), "ip", "netns", "del", r.NetNS); return err })
	var err error
	if r.IP, err = l.plugInternet(ctx, r.NetNS, "eth0"); err != nil {
		return nil, err
	}
	l.mu.Lock()
	r.AltIP = l.nextInternetIP()
	l.mu.Unlock()
	if _, err := run(ctx, "ip", "-n", r.NetNS, "addr", "add", netip.PrefixFrom(r.AltIP, internetPrefix.Bits()).String(), "dev", "eth0"); err != nil {
		return nil, err
	}
	ns, sa := l.relayIdentity()
	tr, err := l.Core.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(24 * 3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for relay %s: %w", name, err)
	}
	if err := l.CP.WriteKubeconfig(r.Kubeconfig, tr.Status.Token); err != nil {
		return nil, err
	}
	if err := r.Start(); err != nil {
		return nil, err
	}
	l.defer_(r.Stop)
	l.mu.Lock()
	l.relays = append(l.relays, r)
	l.mu.Unlock()
	return r, nil
}

// Addr is the relay's host:port for clients.
func (r *Relay) Addr() string { return netip.AddrPortFrom(r.IP, uint16(r.Port)).String() }

// STUN is the STUN server's primary address.
func (r *Relay) STUN() netip.AddrPort { return netip.AddrPortFrom(r.IP, uint16(r.STUNPort)) }

// Start runs wirelace-relay (again, after Stop or Kill).
func (r *Relay) Start() error {
	argv := []string{"ip", "netns", "exec", r.NetNS, filepath.Join(r.lab.opts.Root, "bin", "wirelace-relay"),
		"--listen", fmt.Sprintf(":%d", r.Port),
		"--stun-listen", r.STUN().String(),
		"--stun-alt-listen", netip.AddrPortFrom(r.AltIP, uint16(r.STUNPort+1)).String(),
		"--metrics-listen", "127.0.0.1:9090",
		"--kubeconfig", r.Kubeconfig,
		"--log-level", "debug",
	}
	argv = append(argv, r.extra...)
	p, err := proc.Start("wirelace-relay "+r.Name, r.LogPath, argv)
	if err != nil {
		return err
	}
	r.proc = p
	return nil
}

// Stop stops the relay gracefully.
func (r *Relay) Stop() error {
	if r.proc == nil {
		return nil
	}
	return r.proc.Stop(5 * time.Second)
}

// Kill kills the relay, as a crash would.
func (r *Relay) Kill() error {
	if r.proc == nil {
		return nil
	}
	return r.proc.Kill()
}

// relayArgs are the wirelaced flags naming every relay and STUN server of
// the lab.
func (l *Lab) relayArgs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.relays) == 0 {
		return nil
	}
	var relays, stun string
	for i, r := range l.relays {
		if i > 0 {
			relays += ","
			stun += ","
		}
		relays += r.Addr()
		stun += r.STUN().String()
	}
	return []string{"--relays", relays, "--stun-servers", stun}
}

// Relays returns the lab's relays in the order they were added.
func (l *Lab) Relays() []*Relay {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Relay(nil), l.relays...)
}
