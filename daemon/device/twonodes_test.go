package device

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Environment of a TestTwoNodes child.
const (
	envRole     = "WLT_ROLE" // "serve" (wait until stdin closes) or "ping"
	envKey      = "WLT_KEY"
	envMesh     = "WLT_MESH_IP"
	envPeerKey  = "WLT_PEER_PUBLIC_KEY"
	envPeerMesh = "WLT_PEER_MESH_IP"
	envPeerAddr = "WLT_PEER_ENDPOINT"
)

// TestTwoNodes runs two devices in two network namespaces joined by a veth,
// each with its own wirelace Bind, as peers of each other, and pings across.
// The pinging side then restarts its device (Close, Open) and pings again over
// the routes that survived.
func TestTwoNodes(t *testing.T) {
	if inChild(t) {
		twoNodesChild(t)
		return
	}
	needRoot(t)

	nsA, nsB := newNetns(t), newNetns(t)
	run(t, "ip", "-n", nsA, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", nsB)
	for ns, addr := range map[string]string{nsA: "198.18.0.11/24", nsB: "198.18.0.12/24"} {
		run(t, "ip", "-n", ns, "addr", "add", addr, "dev", "eth1")
		run(t, "ip", "-n", ns, "link", "set", "eth1", "up")
	}

	keyA, keyB := newKey(t), newKey(t)
	env := func(role string, self, peer wgtypes.Key, mesh, peerMesh, peerAddr string) []string {
		return []string{
			envRole + "=" + role,
			envKey + "=" + self.String(),
			envMesh + "=" + mesh,
			envPeerKey + "=" + peer.PublicKey().String(),
			envPeerMesh + "=" + peerMesh,
			envPeerAddr + "=" + peerAddr,
		}
	}
	b := startChild(t, nsB, t.Name(), env("serve", keyB, keyA, "100.64.0.2", "100.64.0.1", "198.18.0.11:51820")...)
	runChild(t, nsA, t.Name(), env("ping", keyA, keyB, "100.64.0.1", "100.64.0.2", "198.18.0.12:51820")...)
	b.stop(t)
}

func twoNodesChild(t *testing.T) {
	key, err := wgtypes.ParseKey(os.Getenv(envKey))
	if err != nil {
		t.Fatal(err)
	}
	peerKey, err := wgtypes.ParseKey(os.Getenv(envPeerKey))
	if err != nil {
		t.Fatal(err)
	}
	peerAddr, err := net.ResolveUDPAddr("udp4", os.Getenv(envPeerAddr))
	if err != nil {
		t.Fatal(err)
	}
	mesh := mustCIDR(t, os.Getenv(envMesh)+"/32")
	peerMesh := mustCIDR(t, os.Getenv(envPeerMesh)+"/32")

	cfg := Config{Name: testName, MTU: 1420, ListenPort: 51820, PrivateKey: key, Logger: testLogger()}
	peer := wgtypes.PeerConfig{PublicKey: peerKey, Endpoint: peerAddr, AllowedIPs: []net.IPNet{*peerMesh}}

	d := openDevice(t, cfg)
	defer func() { d.Close() }()
	if err := d.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{peer}}); err != nil {
		t.Fatal(err)
	}
	link, err := netlink.LinkByIndex(d.Index())
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: mesh}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: d.Index(), Dst: peerMesh, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}

	switch role := os.Getenv(envRole); role {
	case "serve":
		fmt.Println(readyLine)
		waitStdinEOF()
		checkTraffic(t, d, peerKey)

	case "ping":
		ping(t, peerMesh.IP.String())
		checkTraffic(t, d, peerKey)

		// Restart, as after a daemon crash: the address and route stay on the
		// persistent link; only the WireGuard configuration is applied again.
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d = openDevice(t, cfg)
		if d.Index() != link.Attrs().Index {
			t.Errorf("index after restart %d, want %d", d.Index(), link.Attrs().Index)
		}
		if err := d.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{peer}}); err != nil {
			t.Fatal(err)
		}
		ping(t, peerMesh.IP.String())
		checkTraffic(t, d, peerKey)

	default:
		t.Fatalf("unknown role %q", role)
	}
}

func ping(t *testing.T, ip string) {
	t.Helper()
	// Three replies within ten seconds; the first may wait for the handshake.
	out, err := exec.CommandContext(withTimeout(t, 30*time.Second), "ping", "-n", "-c", "3", "-i", "0.2", "-w", "10", ip).CombinedOutput()
	t.Logf("ping %s:\n%s", ip, out)
	if err != nil {
		t.Fatalf("ping %s: %v", ip, err)
	}
}

// checkTraffic checks that the peer has a handshake and traffic both ways.
func checkTraffic(t *testing.T, d *Device, peerKey wgtypes.Key) {
	t.Helper()
	out, _ := exec.Command("wg", "show", testName).CombinedOutput()
	t.Logf("wg show %s:\n%s", testName, out)
	peers, err := d.Peers()
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 1 || peers[0].PublicKey != peerKey {
		t.Fatalf("peers = %+v, want only %s", peers, peerKey)
	}
	p := peers[0]
	if p.LastHandshakeTime.IsZero() {
		t.Error("no handshake")
	}
	if p.ReceiveBytes == 0 || p.TransmitBytes == 0 {
		t.Errorf("rx %d bytes, tx %d bytes; want both > 0", p.ReceiveBytes, p.TransmitBytes)
	}
	// The link's own counters (what memtrim reads) saw the pings: three
	// 84-byte echo packets at least.
	if n, err := d.Traffic(); err != nil || n < 3*84 {
		t.Errorf("link counters: %d bytes (%v); want at least three pings'", n, err)
	}
}
