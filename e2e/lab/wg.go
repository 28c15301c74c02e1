package lab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// WGPeer is one peer line of `wg show <dev> dump`.
type WGPeer struct {
	PublicKey     string
	Endpoint      string
	AllowedIPs    []string
	LastHandshake time.Time
	RxBytes       int64
	TxBytes       int64
}

// WGDevice is what `wg show <dev> dump` says of a device.
type WGDevice struct {
	PublicKey  string
	ListenPort int
	Peers      map[string]WGPeer // by public key
}

// WG reads the node's WireGuard device with the real `wg` tool, which talks
// to the daemon's UAPI socket: what an operator would see.
func (n *Node) WG(ctx context.Context, dev string) (WGDevice, error) {
	out, err := n.Exec(ctx, "wg", "show", dev, "dump")
	if err != nil {
		return WGDevice{}, err
	}
	return parseWGDump(out)
}

func parseWGDump(out string) (WGDevice, error) {
	d := WGDevice{Peers: map[string]WGPeer{}}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return d, fmt.Errorf("empty wg dump")
	}
	head := strings.Split(lines[0], "\t")
	if len(head) < 4 {
		return d, fmt.Errorf("bad wg dump interface line %q", lines[0])
	}
	d.PublicKey = head[1]
	d.ListenPort, _ = strconv.Atoi(head[2])
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) < 8 {
			return d, fmt.Errorf("bad wg dump peer line %q", l)
		}
		p := WGPeer{PublicKey: f[0], Endpoint: f[2]}
		if f[3] != "(none)" {
			p.AllowedIPs = strings.Split(f[3], ",")
		}
		if hs, _ := strconv.ParseInt(f[4], 10, 64); hs > 0 {
			p.LastHandshake = time.Unix(hs, 0)
		}
		p.RxBytes, _ = strconv.ParseInt(f[5], 10, 64)
		p.TxBytes, _ = strconv.ParseInt(f[6], 10, 64)
		d.Peers[p.PublicKey] = p
	}
	return d, nil
}

// Ping sends count pings from the node to ip and reports whether any came
// back.
func (n *Node) Ping(ctx context.Context, ip string, count int) error {
	_, err := n.Exec(ctx, "ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "1", ip)
	return err
}
