package device

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/wirelace/wirelace/daemon/bind"
)

const testName = "lace0"

func newKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func openDevice(t *testing.T, cfg Config) *Device {
	t.Helper()
	d, err := Open(cfg, bind.New(cfg.Logger))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

// checkLink checks that the link is an up, persistent TUN with the given index
// and MTU, and that it still has addrs and routes to dsts.
func checkLink(t *testing.T, index, mtu int, addrs, dsts []*net.IPNet) {
	t.Helper()
	link, err := netlink.LinkByName(testName)
	if err != nil {
		t.Fatalf("link %s: %v", testName, err)
	}
	a := link.Attrs()
	tt, ok := link.(*netlink.Tuntap)
	if !ok || tt.Mode != netlink.TUNTAP_MODE_TUN {
		t.Errorf("link type %s, want a TUN", link.Type())
	} else if tt.NonPersist {
		t.Errorf("TUN is not persistent")
	}
	if a.Index != index {
		t.Errorf("index %d, want %d", a.Index, index)
	}
	if a.MTU != mtu {
		t.Errorf("MTU %d, want %d", a.MTU, mtu)
	}
	if a.Flags&net.FlagUp == 0 {
		t.Errorf("link is not up (flags %v)", a.Flags)
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range addrs {
		if !slices.ContainsFunc(have, func(x netlink.Addr) bool { return x.IPNet.String() == addr.String() }) {
			t.Errorf("address %s missing; addresses: %v", addr, have)
		}
	}
	routes, err := netlink.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range dsts {
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.String() == dst.String() }) {
			t.Errorf("route to %s missing; routes: %v", dst, routes)
		}
		// And it is the route the kernel picks: while the device is closed,
		// traffic for the mesh must not find another way out.
		got, err := netlink.RouteGet(dst.IP)
		if err != nil || len(got) == 0 || got[0].LinkIndex != index {
			t.Errorf("route lookup for %s = %v, %v; want via link %d", dst.IP, got, err, index)
		}
	}
}

// wgDump returns the interface line of `wg show <name> dump`:
// private key, public key, listen port, fwmark.
func wgDump(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("wg", "show", testName, "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("wg show %s dump: %v\n%s", testName, err, out)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.Split(line, "\t")
}

func linkState(t *testing.T) string {
	t.Helper()
	link, err := netlink.LinkByName(testName)
	if err != nil {
		t.Fatal(err)
	}
	a := link.Attrs()
	return "operstate=" + a.OperState.String() + " flags=" + a.Flags.String() +
		" lower_up=" + strconv.FormatBool(a.RawFlags&0x10000 != 0) // IFF_LOWER_UP
}

// TestReattach opens the device, gives the link an address and a route, closes
// the device without deleting the link (as a crash would) and opens it again:
// the link, its index, address and route must still be there and the device
// must work.
func TestReattach(t *testing.T) {
	if !inChild(t) {
		needRoot(t)
		runChild(t, newNetns(t), t.Name())
		return
	}

	log := testLogger()
	key := newKey(t)
	cfg := Config{Name: testName, MTU: 1380, ListenPort: 51820, PrivateKey: key, FwMark: 0x51, Logger: log}
	d := openDevice(t, cfg)
	index := d.Index()

	dump := wgDump(t)
	if len(dump) < 4 || dump[0] != key.String() || dump[1] != key.PublicKey().String() || dump[2] != "51820" || dump[3] != "0x51" {
		t.Errorf("wg show dump = %q, want key %s, port 51820, fwmark 0x51", dump, key.PublicKey())
	}

	link, err := netlink.LinkByIndex(index)
	if err != nil {
		t.Fatal(err)
	}
	addrs := []*net.IPNet{mustCIDR(t, "100.64.0.1/32"), mustCIDR(t, "fd64::1/128")}
	dst := mustCIDR(t, "100.64.0.9/32")
	dsts := []*net.IPNet{dst, mustCIDR(t, "fd64::9/128")}
	for _, addr := range addrs {
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: addr, Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatal(err)
		}
	}
	for _, dst := range dsts {
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatal(err)
		}
	}
	checkLink(t, index, 1380, addrs, dsts)
	t.Logf("open: %s", linkState(t))

	// A second Open while the first holds the TUN must fail and change nothing.
	if d2, err := Open(cfg, bind.New(log)); err == nil {
		d2.Close()
		t.Error("second Open of a TUN in use succeeded")
	} else {
		t.Logf("second Open while in use: %v", err)
	}

	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("closed: %s", linkState(t))
	out, _ := exec.Command("ip", "-d", "route", "show", "dev", testName).CombinedOutput()
	t.Logf("closed: routes:\n%s", out)
	out, _ = exec.Command("ip", "-6", "route", "show", "dev", testName).CombinedOutput()
	t.Logf("closed: IPv6 routes:\n%s", out)
	checkLink(t, index, 1380, addrs, dsts)
	if _, err := os.Stat("/var/run/wireguard/" + testName + ".sock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("UAPI socket still there after Close: %v", err)
	}
	if out, err := exec.Command("wg", "show", testName).CombinedOutput(); err == nil {
		t.Errorf("wg show works after Close:\n%s", out)
	}

	d = openDevice(t, cfg)
	defer d.Close()
	t.Logf("reopened: %s", linkState(t))
	out, _ = exec.Command("ip", "-d", "link", "show", testName).CombinedOutput()
	t.Logf("reopened: %s", out)
	out, _ = exec.Command("ethtool", "-k", testName).CombinedOutput()
	t.Logf("reopened: offloads:\n%s", out)
	if d.Index() != index {
		t.Errorf("reopened index %d, want %d", d.Index(), index)
	}
	checkLink(t, index, 1380, addrs, dsts)
	if dump := wgDump(t); len(dump) < 3 || dump[0] != key.String() || dump[2] != "51820" {
		t.Errorf("wg show dump after reopen = %q", dump)
	}

	// The device works: a packet routed to the link makes wireguard-go send a
	// handshake initiation to the peer's endpoint, here a plain UDP socket.
	peerEnd, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peerEnd.Close()
	err = d.Configure(wgtypes.Config{Peers: []wgtypes.PeerConfig{{
		PublicKey:  newKey(t).PublicKey(),
		Endpoint:   peerEnd.LocalAddr().(*net.UDPAddr),
		AllowedIPs: []net.IPNet{*dst},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if peers, err := d.Peers(); err != nil || len(peers) != 1 {
		t.Fatalf("Peers() = %v, %v; want 1 peer", peers, err)
	}
	probe, err := net.Dial("udp4", "100.64.0.9:9")
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if _, err := probe.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	peerEnd.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := peerEnd.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no handshake initiation from the reopened device: %v", err)
	}
	if n != 148 || binary.LittleEndian.Uint32(buf) != 1 {
		t.Errorf("got %d bytes of type %d, want a 148-byte initiation (type 1)", n, binary.LittleEndian.Uint32(buf))
	}
	if from.Port != 51820 {
		t.Errorf("initiation came from port %d, want 51820", from.Port)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Delete(testName); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := netlink.LinkByName(testName); err == nil {
		t.Error("link still there after Delete")
	}
	if err := Delete(testName); err != nil {
		t.Errorf("Delete of an absent link: %v", err)
	}
}

// TestOpenFailureUndo makes Open fail late (the UDP port is taken) and checks
// that a link it created is removed and a link that existed is kept.
func TestOpenFailureUndo(t *testing.T) {
	if !inChild(t) {
		needRoot(t)
		runChild(t, newNetns(t), t.Name())
		return
	}

	log := testLogger()
	taken, err := net.ListenPacket("udp4", ":51820")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := Config{Name: testName, ListenPort: 51820, PrivateKey: newKey(t), Logger: log}

	_, err = Open(cfg, bind.New(log))
	if err == nil {
		t.Fatal("Open with the port in use succeeded")
	}
	t.Logf("Open with the port in use: %v", err)
	if _, err := netlink.LinkByName(testName); err == nil {
		t.Error("failed Open left a new link behind")
	}
	if _, err := os.Stat("/var/run/wireguard/" + testName + ".sock"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed Open left the UAPI socket behind: %v", err)
	}

	// Now with a persistent link from an earlier run.
	other := cfg
	other.ListenPort = 0
	d := openDevice(t, other)
	index := d.Index()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg, bind.New(log)); err == nil {
		t.Fatal("Open with the port in use succeeded")
	}
	link, err := netlink.LinkByName(testName)
	if err != nil {
		t.Fatalf("failed Open removed the pre-existing link: %v", err)
	}
	if link.Attrs().Index != index {
		t.Errorf("index %d, want %d", link.Attrs().Index, index)
	}
	if err := Delete(testName); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRefusesOtherLinks checks that Open and Delete leave alone a link of
// the same name that is not a single-queue TUN.
func TestOpenRefusesOtherLinks(t *testing.T) {
	if !inChild(t) {
		needRoot(t)
		runChild(t, newNetns(t), t.Name())
		return
	}

	log := testLogger()
	for _, tc := range []struct {
		link netlink.Link
		want string
	}{
		{&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: testName}}, "is a dummy device, not a TUN"},
		{&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: testName}}, "is a bridge device, not a TUN"},
		{&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: testName}, Mode: netlink.TUNTAP_MODE_TAP}, "is a TAP device"},
	} {
		t.Run(tc.link.Type(), func(t *testing.T) {
			if err := netlink.LinkAdd(tc.link); err != nil {
				if errors.Is(err, unix.EOPNOTSUPP) {
					// Some kernels are built without the dummy driver.
					t.Skipf("cannot create a %s link: %v", tc.link.Type(), err)
				}
				t.Fatal(err)
			}
			before, err := netlink.LinkByName(testName)
			if err != nil {
				t.Fatal(err)
			}
			defer netlink.LinkDel(before)

			_, err = Open(Config{Name: testName, PrivateKey: newKey(t), Logger: log}, bind.New(log))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want an error containing %q", err, tc.want)
			}
			t.Logf("Open: %v", err)
			if err := Delete(testName); err == nil {
				t.Error("Delete removed a link that is not ours")
			}

			after, err := netlink.LinkByName(testName)
			if err != nil {
				t.Fatalf("link gone: %v", err)
			}
			if after.Attrs().Index != before.Attrs().Index || after.Type() != before.Type() ||
				after.Attrs().Flags != before.Attrs().Flags || after.Attrs().MTU != before.Attrs().MTU {
				t.Errorf("link changed: %+v, was %+v", after.Attrs(), before.Attrs())
			}
			if _, err := os.Stat("/var/run/wireguard/" + testName + ".sock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("UAPI socket created: %v", err)
			}
		})
	}
}

// TestCloseReleasesGoroutines opens and closes the device several times and
// checks that wireguard-go, the TUN watchers and the UAPI server all stop.
func TestCloseReleasesGoroutines(t *testing.T) {
	if !inChild(t) {
		needRoot(t)
		runChild(t, newNetns(t), t.Name())
		return
	}
	cfg := Config{Name: testName, PrivateKey: newKey(t), Logger: testLogger()}
	before := runtime.NumGoroutine()
	for range 5 {
		openDevice(t, cfg).Close()
	}
	// Some goroutines end just after Close returns (the TUN's netlink watcher).
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after five Open/Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
	if err := Delete(testName); err != nil {
		t.Fatal(err)
	}
}
