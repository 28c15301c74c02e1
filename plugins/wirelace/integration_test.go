package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/fakedaemon"
	"github.com/wirelace/wirelace/plugins/internal/podnet"
	"github.com/wirelace/wirelace/plugins/internal/testenv"
)

// These tests drive the built plugins through libcni, as a runtime does,
// with a real conflist, against the fake daemon. The "host" is a throwaway
// network namespace: libcni runs on a thread locked in it, so the plugins
// it executes see it as their host netns.

// node is one test's host: its netns, fake daemon, conflist and libcni.
type node struct {
	t      *testing.T
	host   ns.NetNS
	daemon *fakedaemon.Daemon
	cni    *libcni.CNIConfig
	list   *libcni.NetworkConfigList
}

// newNode sets up a node; extra fields go into the wirelace plugin's
// configuration.
func newNode(t *testing.T, opts fakedaemon.Options, extra map[string]any) *node {
	testenv.RequireRoot(t)
	n := &node{t: t, host: testenv.HostNS(t), daemon: fakedaemon.Start(t, opts)}
	plugin := map[string]any{
		"type":   "wirelace",
		"socket": n.daemon.Socket(),
		"ipam":   map[string]any{"type": "wirelace-ipam", "socket": n.daemon.Socket()},
	}
	for k, v := range extra {
		plugin[k] = v
	}
	conflist, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "wirelace", "plugins": []any{plugin}})
	if err != nil {
		t.Fatal(err)
	}
	path := testenv.WriteFile(t, t.TempDir(), "10-wirelace.conflist", conflist)
	if n.list, err = libcni.ConfListFromFile(path); err != nil {
		t.Fatal(err)
	}
	// An explicit exec: libcni sets a missing one lazily, which races when
	// ADDs run in parallel.
	runner := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), runner)
	return n
}

// pod is a pod netns and the runtime's view of its attachment.
type pod struct {
	netns ns.NetNS
	rt    *libcni.RuntimeConf
}

func (n *node) newPod(name string) *pod {
	netns := testenv.NetNS(n.t)
	return &pod{netns: netns, rt: &libcni.RuntimeConf{
		ContainerID: "ctr-" + name,
		NetNS:       netns.Path(),
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", "default"},
			{"K8S_POD_NAME", name},
			{"K8S_POD_UID", "uid-" + name},
		},
	}}
}

func (p *pod) key() netconf.AttachmentKey {
	return netconf.AttachmentKey{ContainerID: p.rt.ContainerID, IfName: p.rt.IfName}
}

func (p *pod) hostVeth() string { return podnet.HostVethName(p.rt.ContainerID, p.rt.IfName) }

// inHost runs f on a thread in the host netns.
func (n *node) inHost(f func() error) error {
	return n.host.Do(func(ns.NetNS) error { return f() })
}

func (n *node) add(p *pod) (*types100.Result, error) {
	var res types.Result
	err := n.inHost(func() error {
		var err error
		res, err = n.cni.AddNetworkList(context.Background(), n.list, p.rt)
		return err
	})
	if err != nil {
		return nil, err
	}
	return types100.NewResultFromResult(res)
}

func (n *node) mustAdd(p *pod) *types100.Result {
	n.t.Helper()
	res, err := n.add(p)
	if err != nil {
		n.t.Fatalf("ADD %s: %v", p.rt.ContainerID, err)
	}
	n.t.Cleanup(func() { _ = n.del(p) })
	return res
}

func (n *node) check(p *pod) error {
	return n.inHost(func() error { return n.cni.CheckNetworkList(context.Background(), n.list, p.rt) })
}

func (n *node) del(p *pod) error {
	return n.inHost(func() error { return n.cni.DelNetworkList(context.Background(), n.list, p.rt) })
}

func (n *node) status() error {
	return n.inHost(func() error { return n.cni.GetStatusNetworkList(context.Background(), n.list) })
}

func (n *node) gc(valid ...*pod) error {
	args := &libcni.GCArgs{}
	for _, p := range valid {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: p.rt.ContainerID, IfName: p.rt.IfName})
	}
	return n.inHost(func() error { return n.cni.GCNetworkList(context.Background(), n.list, args) })
}

// hostLink returns the host link named name, or nil.
func (n *node) hostLink(name string) netlink.Link {
	var l netlink.Link
	_ = n.inHost(func() error {
		l, _ = netlink.LinkByName(name)
		return nil
	})
	return l
}

// hostRoutes returns the host's routes through the link named dev.
func (n *node) hostRoutes(dev string) []string {
	var out []string
	_ = n.inHost(func() error {
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{}, 0)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().Name == dev && r.Dst != nil {
				out = append(out, r.Dst.String())
			}
		}
		return nil
	})
	return out
}

// inHostCmd runs a command in the host netns.
func (n *node) inHostCmd(argv ...string) (string, error) {
	var out []byte
	err := n.inHost(func() error {
		var err error
		out, err = exec.Command(argv[0], argv[1:]...).CombinedOutput()
		return err
	})
	return string(out), err
}

func wantCode(t *testing.T, err error, code uint, msg string) {
	t.Helper()
	var cniErr *types.Error
	if !errors.As(err, &cniErr) {
		t.Fatalf("got %v (%T), want an error result with code %d", err, err, code)
	}
	if cniErr.Code != code || !strings.Contains(cniErr.Error(), msg) {
		t.Fatalf("got code %d %q, want code %d containing %q", cniErr.Code, cniErr.Error(), code, msg)
	}
}

// assertNothingLeft checks that p has no veth and no allocation.
func (n *node) assertNothingLeft(p *pod) {
	n.t.Helper()
	if l := n.hostLink(p.hostVeth()); l != nil {
		n.t.Errorf("host veth %s left behind", p.hostVeth())
	}
	if n.daemon.Allocated(p.key()) {
		n.t.Errorf("allocation of %s left behind: %+v", p.rt.ContainerID, n.daemon.Allocations())
	}
}

func TestAddCheckDel(t *testing.T) {
	n := newNode(t, fakedaemon.Options{MTU: 1380}, nil)
	p := n.newPod("web")
	res := n.mustAdd(p)

	// The result: host veth, pod eth0 with the MTU, /32 and /128 through
	// the link-local gateways.
	if len(res.Interfaces) != 2 || res.Interfaces[0].Name != p.hostVeth() || res.Interfaces[1].Name != "eth0" ||
		res.Interfaces[1].Sandbox != p.netns.Path() || res.Interfaces[1].Mtu != 1380 {
		t.Fatalf("interfaces: %v", res.Interfaces)
	}
	var addrs []string
	for _, ip := range res.IPs {
		addrs = append(addrs, ip.Address.String()+" gw "+ip.Gateway.String())
	}
	if want := []string{"10.244.1.2/32 gw 169.254.1.1", "fd00:10:244:1::2/128 gw fe80::1"}; !reflect.DeepEqual(addrs, want) {
		t.Fatalf("IPs %v, want %v", addrs, want)
	}
	if !n.daemon.Allocated(p.key()) {
		t.Fatal("no allocation in the daemon")
	}
	got := n.daemon.Allocations()[0]
	if got.PodNamespace != "default" || got.PodName != "web" || got.PodUID != "uid-web" || got.Netns != p.netns.Path() {
		t.Errorf("pod identity not passed to the daemon: %+v", got)
	}

	// The pod side, as the pod sees it.
	testenv.Do(t, p.netns, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if l.Attrs().MTU != 1380 || l.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("eth0: MTU %d, flags %v", l.Attrs().MTU, l.Attrs().Flags)
		}
		as, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
		have := map[string]bool{}
		for _, a := range as {
			have[a.IPNet.String()] = true
		}
		for _, want := range []string{"10.244.1.2/32", "fd00:10:244:1::2/128"} {
			if !have[want] {
				return fmt.Errorf("eth0 lacks %s: %v", want, as)
			}
		}
		rs, _ := netlink.RouteList(l, netlink.FAMILY_ALL)
		defaults := map[string]bool{}
		for _, r := range rs {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				defaults[r.Gw.String()] = true
			}
		}
		if !defaults["169.254.1.1"] || !defaults["fe80::1"] {
			return fmt.Errorf("default routes: %v", rs)
		}
		return nil
	})

	// The host side.
	host := n.hostLink(p.hostVeth())
	if host == nil || host.Attrs().MTU != 1380 {
		t.Fatalf("host veth %s: %v", p.hostVeth(), host)
	}
	routes := strings.Join(n.hostRoutes(p.hostVeth()), " ")
	for _, want := range []string{"10.244.1.2/32", "fd00:10:244:1::2/128"} {
		if !strings.Contains(routes, want) {
			t.Errorf("host routes via %s: %s, want %s", p.hostVeth(), routes, want)
		}
	}
	if out, err := n.inHostCmd("sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.conf."+p.hostVeth()+".proxy_arp"); err != nil || strings.Fields(out)[0] != "1" || strings.Fields(out)[1] != "1" || strings.Fields(out)[2] != "1" {
		t.Errorf("forwarding/proxy_arp in the host netns: %q %v", out, err)
	}

	// Traffic: the host reaches the pod over both families, which needs the
	// pod to answer through its gateways.
	for _, dst := range []string{"10.244.1.2", "fd00:10:244:1::2"} {
		if out, err := n.inHostCmd("ping", "-c", "2", "-i", "0.2", "-W", "2", dst); err != nil {
			t.Errorf("ping %s from the host: %v\n%s", dst, err, out)
		}
	}

	// Without the pod's permanent neighbour entry for 169.254.1.1, the
	// host veth's proxy_arp answers for the gateway.
	testenv.Do(t, p.netns, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.NeighDel(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, IP: net.ParseIP("169.254.1.1")})
	})
	if out, err := n.inHostCmd("ping", "-c", "2", "-i", "0.2", "-W", "2", "10.244.1.2"); err != nil {
		t.Errorf("ping through proxy_arp: %v\n%s", err, out)
	}

	// A repeated ADD returns the same attachment (and puts the neighbour
	// entry back).
	again, err := n.add(p)
	if err != nil {
		t.Fatalf("repeated ADD: %v", err)
	}
	if !reflect.DeepEqual(res, again) {
		t.Errorf("repeated ADD returned\n%v\nfirst\n%v", again, res)
	}
	if len(n.daemon.Allocations()) != 1 {
		t.Errorf("repeated ADD allocated again: %+v", n.daemon.Allocations())
	}

	if err := n.check(p); err != nil {
		t.Fatalf("CHECK: %v", err)
	}

	// CHECK finds a missing host route...
	if err := n.inHost(func() error {
		_, dst, _ := net.ParseCIDR("10.244.1.2/32")
		return netlink.RouteDel(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK})
	}); err != nil {
		t.Fatal(err)
	}
	err = n.check(p)
	wantCode(t, err, types.ErrInternal, "host route 10.244.1.2/32 via "+p.hostVeth()+" missing")
	// ... which a repeated ADD repairs.
	if _, err := n.add(p); err != nil {
		t.Fatalf("repairing ADD: %v", err)
	}
	if err := n.check(p); err != nil {
		t.Fatalf("CHECK after repair: %v", err)
	}

	// CHECK finds a changed MTU.
	testenv.Do(t, p.netns, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.LinkSetMTU(l, 1300)
	})
	wantCode(t, n.check(p), types.ErrInternal, "pod interface eth0 has MTU 1300, expected 1380")

	// CHECK cannot tell with the daemon down: try again later.
	n.daemon.Down()
	wantCode(t, n.check(p), types.ErrTryAgainLater, "daemon not running")
	if err := n.daemon.Up(); err != nil {
		t.Fatal(err)
	}

	// DEL removes the veth, its routes and the allocation; again, it
	// succeeds; with the netns gone too.
	if err := n.del(p); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	n.assertNothingLeft(p)
	if r := n.hostRoutes(p.hostVeth()); len(r) != 0 {
		t.Errorf("routes left: %v", r)
	}
	if err := n.del(p); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
	p.rt.NetNS = "/var/run/netns/wirelace-test-gone"
	if err := n.del(p); err != nil {
		t.Fatalf("DEL with the netns gone: %v", err)
	}
}

func TestCheckLostAllocation(t *testing.T) {
	n := newNode(t, fakedaemon.Options{}, nil)
	p := n.newPod("lost")
	n.mustAdd(p)
	if _, err := n.daemon.GCForTest(nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, n.check(p), types.ErrInternal, "wirelaced holds no allocation for container ctr-lost eth0")
}

func TestDelDaemonDown(t *testing.T) {
	n := newNode(t, fakedaemon.Options{}, nil)
	p := n.newPod("down")
	n.mustAdd(p)
	n.daemon.Down()
	// DEL succeeds: the veth goes now, and the release is recorded for the
	// daemon (a runtime may never retry a DEL).
	if err := n.del(p); err != nil {
		t.Fatalf("DEL with the daemon down: %v", err)
	}
	pending, _, err := netconf.ReadPendingReleases(n.daemon.Socket())
	if err != nil || len(pending) != 1 || !pending[0].IPAM || pending[0].ContainerID != p.rt.ContainerID {
		t.Fatalf("pending releases %+v (%v), want one IPAM release of %s", pending, err, p.rt.ContainerID)
	}
	// The daemon carries it out when it is back: nothing leaks.
	if err := n.daemon.Up(); err != nil {
		t.Fatal(err)
	}
	n.assertNothingLeft(p)
	// A repeated DEL is still a success.
	if err := n.del(p); err != nil {
		t.Fatalf("repeated DEL: %v", err)
	}
}

func TestFailedAddLeavesNothing(t *testing.T) {
	t.Run("pod ifname exists", func(t *testing.T) {
		n := newNode(t, fakedaemon.Options{}, nil)
		p := n.newPod("taken")
		testenv.Do(t, p.netns, func() error {
			_, err := testenv.AddBridge("eth0")
			return err
		})
		_, err := n.add(p)
		wantCode(t, err, types.ErrInternal, "already has a bridge interface named eth0")
		n.assertNothingLeft(p)
		testenv.Do(t, p.netns, func() error { // not ours: left alone
			_, err := netlink.LinkByName("eth0")
			return err
		})
	})
	t.Run("netns not a netns", func(t *testing.T) {
		n := newNode(t, fakedaemon.Options{}, nil)
		p := n.newPod("file")
		p.rt.NetNS = testenv.WriteFile(t, t.TempDir(), "netns", nil)
		_, err := n.add(p)
		wantCode(t, err, types.ErrInvalidEnvironmentVariables, "is not a network namespace")
		n.assertNothingLeft(p)
	})
	t.Run("MTU too small for IPv6", func(t *testing.T) {
		n := newNode(t, fakedaemon.Options{}, map[string]any{"mtu": 1200})
		p := n.newPod("small")
		_, err := n.add(p)
		wantCode(t, err, types.ErrInvalidNetworkConfig, "MTU 1200 is below IPv6's minimum")
		n.assertNothingLeft(p)
	})
	t.Run("impossible MTU from the daemon", func(t *testing.T) {
		n := newNode(t, fakedaemon.Options{MTU: 70000}, nil)
		p := n.newPod("huge")
		_, err := n.add(p)
		wantCode(t, err, types.ErrInternal, "wirelaced reports MTU 70000")
		n.assertNothingLeft(p)
	})
	t.Run("pod has a default route", func(t *testing.T) {
		// Fails after the veth is made: it must be removed again.
		n := newNode(t, fakedaemon.Options{IPv4: true}, nil)
		p := n.newPod("routed")
		testenv.Do(t, p.netns, func() error {
			other, err := testenv.AddBridge("other")
			if err != nil {
				return err
			}
			_, dflt, _ := net.ParseCIDR("0.0.0.0/0")
			return netlink.RouteAdd(&netlink.Route{LinkIndex: other.Attrs().Index, Dst: dflt, Scope: netlink.SCOPE_LINK})
		})
		_, err := n.add(p)
		wantCode(t, err, types.ErrInternal, "already has a default route")
		n.assertNothingLeft(p)
		testenv.Do(t, p.netns, func() error {
			if _, err := netlink.LinkByName("eth0"); err == nil {
				return errors.New("pod eth0 left behind")
			}
			return nil
		})
	})
	t.Run("daemon down", func(t *testing.T) {
		n := newNode(t, fakedaemon.Options{}, nil)
		n.daemon.Down()
		p := n.newPod("nodaemon")
		_, err := n.add(p)
		wantCode(t, err, types.ErrTryAgainLater, "daemon not running")
		n.assertNothingLeft(p)
	})
	t.Run("daemon not ready", func(t *testing.T) {
		n := newNode(t, fakedaemon.Options{}, map[string]any{"mtu": 1400})
		n.daemon.SetReady(false, "no pod CIDR yet")
		p := n.newPod("early")
		_, err := n.add(p)
		wantCode(t, err, types.ErrTryAgainLater, "not ready yet: not ready: no pod CIDR yet")
		n.assertNothingLeft(p)
	})
}

func TestStatus(t *testing.T) {
	n := newNode(t, fakedaemon.Options{}, nil)
	if err := n.status(); err != nil {
		t.Fatalf("STATUS with the daemon up: %v", err)
	}
	n.daemon.SetReady(false, "waiting for the MeshNode of this node")
	wantCode(t, n.status(), types.ErrPluginNotAvailable, "wirelaced is not ready: waiting for the MeshNode of this node")
	n.daemon.SetReady(true, "")
	n.daemon.Down()
	wantCode(t, n.status(), types.ErrPluginNotAvailable, "wirelaced does not answer on "+n.daemon.Socket())
	if err := n.daemon.Up(); err != nil {
		t.Fatal(err)
	}
	if err := n.status(); err != nil {
		t.Fatalf("STATUS with the daemon back: %v", err)
	}
}

func TestGC(t *testing.T) {
	n := newNode(t, fakedaemon.Options{}, nil)
	keep, gone := n.newPod("keep"), n.newPod("gone")
	n.mustAdd(keep)
	n.mustAdd(gone)

	// An allocation whose DEL was lost, and a veth of an attachment the
	// runtime forgot whose netns lives on (allocation released already).
	lost := netconf.AttachmentKey{ContainerID: "ctr-lost", IfName: "eth0"}
	n.daemon.Allocate("wirelace", lost)
	orphanNS := testenv.NetNS(t)
	orphan := podnet.HostVethName("ctr-orphan", "eth0")
	makeVeth := func(name, peer string, peerNS ns.NetNS) {
		t.Helper()
		if err := n.inHost(func() error {
			attrs := netlink.NewLinkAttrs()
			attrs.Name = name
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: peer, PeerNamespace: netlink.NsFd(int(peerNS.Fd()))})
		}); err != nil {
			t.Fatal(err)
		}
	}
	makeVeth(orphan, "eth0", orphanNS)
	// Not Wirelace's host veths by name: never touched.
	makeVeth("lace0", "x0", orphanNS)
	makeVeth("laceNOTHEXabcd", "x1", orphanNS)

	if err := n.gc(keep); err != nil {
		t.Fatalf("GC: %v", err)
	}
	allocs := n.daemon.Allocations()
	if len(allocs) != 1 || allocs[0].AttachmentKey != keep.key() {
		t.Errorf("allocations after GC: %+v, want only %s", allocs, keep.rt.ContainerID)
	}
	for name, want := range map[string]bool{keep.hostVeth(): true, gone.hostVeth(): false, orphan: false, "lace0": true, "laceNOTHEXabcd": true} {
		if got := n.hostLink(name) != nil; got != want {
			t.Errorf("after GC, host link %s exists = %v, want %v", name, got, want)
		}
	}
	if err := n.check(keep); err != nil {
		t.Errorf("CHECK of the valid pod after GC: %v", err)
	}
}

// TestConcurrentAdds attaches pods in parallel, as a runtime starting many
// pods at once does.
func TestConcurrentAdds(t *testing.T) {
	n := newNode(t, fakedaemon.Options{}, nil)
	const count = 8
	pods := make([]*pod, count)
	for i := range pods {
		pods[i] = n.newPod(fmt.Sprintf("p%d", i))
	}
	errs := make(chan error, count)
	for _, p := range pods {
		go func() {
			_, err := n.add(p)
			errs <- err
		}()
	}
	for range pods {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, p := range pods {
		if err := n.check(p); err != nil {
			t.Errorf("CHECK %s: %v", p.rt.ContainerID, err)
		}
	}
	for _, p := range pods {
		if err := n.del(p); err != nil {
			t.Errorf("DEL %s: %v", p.rt.ContainerID, err)
		}
		n.assertNothingLeft(p)
	}
}

// A GC of one network leaves another network's allocations alone, even
// with no valid attachments at all.
func TestGCScopedToNetwork(t *testing.T) {
	n := newNode(t, fakedaemon.Options{}, nil)
	other := netconf.AttachmentKey{ContainerID: "ctr-other", IfName: "eth0"}
	n.daemon.Allocate("second-network", other)
	if err := n.gc(); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if !n.daemon.Allocated(other) {
		t.Fatal("a GC of network wirelace released network second-network's allocation")
	}
}
