package lab

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/wirelace/wirelace/e2e/proc"
)

// InternetHost is a machine outside the cluster, on the internet bridge,
// running a TCP service that answers every connection with the address it
// came from: what a pod's egress looks like from outside.
type InternetHost struct {
	Name  string
	NetNS string
	IP    netip.Addr
	Port  int
	proc  *proc.Process
}

// AddInternetHost starts an internet host.
func (l *Lab) AddInternetHost(ctx context.Context, name string) (*InternetHost, error) {
	h := &InternetHost{Name: name, NetNS: l.Prefix + "-" + name, Port: 8080}
	if _, err := run(ctx, "ip", "netns", "add", h.NetNS); err != nil {
		return nil, err
	}
	l.defer_(func() error { _, err := run(context.Background(), "ip", "netns", "del", h.NetNS); return err })
	var err error
	if h.IP, err = l.plugInternet(ctx, h.NetNS, "eth0"); err != nil {
		return nil, err
	}
	// SYSTEM runs per connection with SOCAT_PEERADDR set by socat.
	argv := []string{"ip", "netns", "exec", h.NetNS, "socat",
		fmt.Sprintf("TCP-LISTEN:%d,reuseaddr,fork", h.Port), "SYSTEM:echo $SOCAT_PEERADDR"}
	h.proc, err = proc.Start(name, filepath.Join(l.Dir, name+".log"), argv)
	if err != nil {
		return nil, err
	}
	l.defer_(func() error { return h.proc.Stop(2 * time.Second) })
	return h, nil
}

// WhoAmI connects from the pod to the host's service and returns the
// address the host saw.
func (p *Pod) WhoAmI(ctx context.Context, h *InternetHost) (string, error) {
	out, err := p.Exec(ctx, "socat", "-T", "3", "-", fmt.Sprintf("TCP:%s:%d,connect-timeout=3", h.IP, h.Port))
	return strings.TrimSpace(out), err
}
