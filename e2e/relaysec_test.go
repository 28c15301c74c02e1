package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/e2e/lab"
	"github.com/wirelace/wirelace/relay/client"
	"github.com/wirelace/wirelace/relay/protocol"
)

// dialFrom returns a dialer whose connections are made inside netns (a
// socket keeps the namespace it was created in).
func dialFrom(netns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.WithNetNSPath("/run/netns/"+netns, func(ns.NetNS) error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

type keys struct{ wg, ctl wgtypes.Key }

func newKeys(t *testing.T) keys {
	t.Helper()
	w, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return keys{w, c}
}

// addMember makes keys a mesh member by publishing a MeshNode for them, as
// a node would.
func addMember(t *testing.T, l *lab.Lab, name string, k keys) {
	t.Helper()
	// The relay counts a MeshNode only while its Node exists.
	if _, err := l.Core.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mn := &v1alpha1.MeshNode{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "MeshNode"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.MeshNodeSpec{
			PublicKey: k.wg.PublicKey().String(), ControlKey: k.ctl.PublicKey().String(),
			MeshIPs: []string{"10.77.255.1"},
		},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(mn)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	if _, err := l.Dynamic.Resource(v1alpha1.MeshNodeResource).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// relayClient connects k to the relay from netns and returns the client
// and a function reporting its latest state.
func relayClient(t *testing.T, addr, netns string, wgPub, ctl wgtypes.Key, receive func(wgtypes.Key, []byte)) (*client.Client, func() client.State) {
	t.Helper()
	var state atomic.Pointer[client.State]
	if receive == nil {
		receive = func(wgtypes.Key, []byte) {}
	}
	c, err := client.New(client.Config{
		Addr: addr, PublicKey: wgPub, ControlKey: ctl, Dial: dialFrom(netns), Receive: receive,
		OnState: func(s client.State) { state.Store(&s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go c.Run(ctx)
	return c, func() client.State {
		if s := state.Load(); s != nil {
			return *s
		}
		return client.State{}
	}
}

// TestRelaySecurity, against the lab's real relay with its MeshNode watch:
// a key in no MeshNode is refused; another node's WireGuard key without
// its control key is refused; garbage, truncated and oversized frames
// close only their own connection; a client that stops reading while it is
// flooded stalls no one else. Throughout, a relayed pair keeps working.
func TestRelaySecurity(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	b, err := l.Build(ctx, lab.Topology{
		Relays: []string{"relay1"},
		Sites:  map[string]lab.NAT{"c1": lab.NATSymmetric, "c2": lab.NATSymmetric},
		Nodes:  map[string]lab.TopoNode{"s1": {Site: "c1"}, "s2": {Site: "c2"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := b.Nodes["s1"], b.Nodes["s2"]
	expectPath(t, s1, s2, "relay", 15*time.Second)
	s2IP := status(t, s2).MeshIPs[0]
	// Test clients connect from a host on the internet.
	probe, err := l.AddNode(ctx, "probe")
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Relays["relay1"].Addr()

	refused := func(name string, state func() client.State, want string) {
		t.Helper()
		eventually(t, 10*time.Second, name+" refused", func() error {
			s := state()
			var re *client.RefusedError
			if s.Connected {
				t.Fatalf("%s: relay accepted it", name)
			}
			if !errors.As(s.Err, &re) {
				return errors.New("no refusal yet")
			}
			if !strings.Contains(re.Reason, want) {
				t.Fatalf("%s: refused for %q, want %q", name, re.Reason, want)
			}
			return nil
		})
	}
	stranger := newKeys(t)
	_, st := relayClient(t, addr, probe.NetNS, stranger.wg.PublicKey(), stranger.ctl, nil)
	refused("a key in no MeshNode", st, "no MeshNode")

	s1Key, _ := wgtypes.ParseKey(status(t, s1).PublicKey)
	_, st = relayClient(t, addr, probe.NetNS, s1Key, stranger.ctl, nil)
	refused("s1's WireGuard key without its control key", st, "control key does not match")

	// Garbage, a truncated frame and an oversized frame, each on its own
	// connection: each is closed, and only it.
	for name, data := range map[string][]byte{
		"garbage":   []byte("GET / HTTP/1.1\r\nHost: relay\r\n\r\n"),
		"truncated": {byte(protocol.TypeClientAuth), 0, 0, 1, 0, 1, 2, 3},
		"oversized": {byte(protocol.TypeClientAuth), 0x7f, 0xff, 0xff, 0xff},
	} {
		c, err := dialFrom(probe.NetNS)(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(data)
		if name == "truncated" {
			c.(*net.TCPConn).CloseWrite()
		}
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.ReadAll(c); err != nil && !isClosed(err) {
			t.Fatalf("%s: connection not closed by the relay: %v", name, err)
		}
		c.Close()
	}
	if err := s1.Ping(ctx, s2IP, 3); err != nil {
		t.Fatalf("relayed pair broken by bad clients: %v", err)
	}

	// A slow reader: a member that authenticates, then never reads, while
	// another member floods it.
	slow, flooder := newKeys(t), newKeys(t)
	addMember(t, l, "slow", slow)
	addMember(t, l, "flooder", flooder)
	var stall net.Conn
	eventually(t, 10*time.Second, "slow reader authenticated", func() error {
		var err error
		stall, err = authenticateRaw(addr, probe.NetNS, slow)
		return err
	})
	defer stall.Close()
	fc, fst := relayClient(t, addr, probe.NetNS, flooder.wg.PublicKey(), flooder.ctl, nil)
	eventually(t, 10*time.Second, "flooder connected", func() error {
		if !fst().Connected {
			return errors.New("not yet")
		}
		return nil
	})
	stop := make(chan struct{})
	go func() {
		pkt := make([]byte, 1400)
		pkt[0] = 4 // a transport-data-shaped packet
		for {
			select {
			case <-stop:
				return
			default:
			}
			fc.Send(slow.wg.PublicKey(), pkt)
		}
	}()
	loss := pingLoss(t, s1, s2IP, func() { time.Sleep(time.Second) })
	close(stop)
	t.Logf("relayed pair lost %d of 100 pings while a slow reader was flooded", loss)
	if loss > 2 {
		t.Fatalf("a slow reader stalled other clients: %d pings lost", loss)
	}
	// The flood did reach the stalled client's queue: the relay dropped and
	// counted it there instead of blocking.
	m := scrape(t, b.Relays["relay1"].NetNS, 9090)
	drops := regexp.MustCompile(`wirelace_relay_dropped_packets_total\{reason="queue_full"\} (\d+)`).FindStringSubmatch(m)
	if drops == nil || drops[1] == "0" {
		t.Fatalf("no queue_full drops counted for the slow reader:\n%s", m)
	}
	t.Logf("relay dropped %s packets for the slow reader", drops[1])
}

// authenticateRaw authenticates k on a raw connection and returns it; the
// caller then reads nothing from it.
func authenticateRaw(addr, netns string, k keys) (net.Conn, error) {
	c, err := dialFrom(netns)(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) { c.Close(); return nil, err }
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := protocol.NewReader(bufio.NewReader(c))
	w := protocol.NewWriter(bufio.NewWriter(c))
	typ, payload, err := r.ReadFrame()
	if err != nil || typ != protocol.TypeServerHello {
		return fail(fmt.Errorf("server hello: %v %v", typ, err))
	}
	hello, err := protocol.ParseServerHello(payload)
	if err != nil {
		return fail(err)
	}
	auth, err := protocol.NewClientAuth(hello, k.wg.PublicKey(), k.ctl, rand.Reader)
	if err != nil {
		return fail(err)
	}
	if err := w.WriteFrame(protocol.TypeClientAuth, auth.Append(nil)); err != nil {
		return fail(err)
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	typ, payload, err = r.ReadFrame()
	if err != nil || typ != protocol.TypeServerAuthOK {
		// The membership watch may not have seen a new MeshNode yet.
		return fail(fmt.Errorf("auth: %v %q %v", typ, protocol.ParseReason(payload), err))
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset by peer") || strings.Contains(err.Error(), "EOF")
}
