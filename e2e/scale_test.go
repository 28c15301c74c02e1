package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/kube"
	"github.com/wirelace/wirelace/e2e/lab"
)

// fakePeers is how many API-only nodes the scale test adds: past the 100
// at which routing used to break (the masquerade table overflowed the
// netlink buffer and the routes after it were never installed).
const fakePeers = 300

// TestScaleRouting: one real node watches 300 other nodes that exist only
// as API objects (Node with its pod CIDR, mesh-IP IPClaim, MeshNode: all a
// real node would have, so every claim is backed), then a real node joins
// last. Every peer's mesh IP and pod CIDR are routed, the masquerade table
// holds, and a pod reaches the pod on the node that joined last.
func TestScaleRouting(t *testing.T) {
	ctx := context.Background()
	l := newLab(t)
	a := startPodNodes(t, l, "a")[0]
	pa, err := a.AddPod(ctx, "pa")
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errs := make(chan error, fakePeers)
	for i := range fakePeers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := addFakeNode(ctx, l, i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("created %d nodes' objects in %s", fakePeers, time.Since(start).Round(time.Millisecond))

	z := startPodNodes(t, l, "z")[0]
	pz, err := z.AddPod(ctx, "pz")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a routes every fake peer", func() error {
		routes := ourRoutes(t, a)
		for i := range fakePeers {
			mesh, pods := fakeAddrs(i)
			if !strings.Contains(routes, mesh.String()+" ") || !strings.Contains(routes, pods.String()+" ") {
				return fmt.Errorf("no route to fake peer %d (%s, %s)", i, mesh, pods)
			}
		}
		return nil
	})
	wgDev, err := a.WG(ctx, "lace0")
	if err != nil {
		t.Fatal(err)
	}
	if len(wgDev.Peers) != fakePeers+1 {
		t.Errorf("lace0 has %d peers, want %d", len(wgDev.Peers), fakePeers+1)
	}
	eventually(t, 20*time.Second, "a's pod reaches the pod on the node that joined last", func() error {
		return pa.Ping(ctx, pz.IPs()[0], 1)
	})
	if out, err := a.Exec(ctx, "nft", "list", "table", "inet", "wirelace"); err != nil || strings.Count(out, "masquerade") != 2 {
		t.Errorf("masquerade table: %v\n%s", err, out)
	}
	if log, _ := os.ReadFile(a.LogPath); strings.Contains(string(log), "no buffer space") {
		t.Errorf("the daemon hit the netlink buffer limit:\n%s", a.LogTail(20))
	}
}

// fakeAddrs are fake node i's mesh IP and pod CIDR.
func fakeAddrs(i int) (mesh netip.Addr, pods netip.Prefix) {
	mesh = netip.AddrFrom4([4]byte{10, 77, 200 + byte(i/250), byte(1 + i%250)})
	pods = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 128 + byte(i/256), byte(i % 256), 0}), 24)
	return mesh, pods
}

// addFakeNode registers node i as a kubelet and its wirelaced would: the
// Node with its pod CIDR, an IPClaim for its mesh IP, its MeshNode. It has
// no endpoints, so nothing is ever sent to it.
func addFakeNode(ctx context.Context, l *lab.Lab, i int) error {
	name := fmt.Sprintf("fake-%03d", i)
	mesh, pods := fakeAddrs(i)
	node, err := l.Core.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: pods.String(), PodCIDRs: []string{pods.String()}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create Node %s: %w", name, err)
	}
	owner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: node.UID}}
	host := netip.PrefixFrom(mesh, 32)
	claim := &v1alpha1.IPClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "IPClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: kube.ClaimName(host), Labels: map[string]string{kube.NodeLabel: name}, OwnerReferences: owner},
		Spec:       v1alpha1.IPClaimSpec{NodeName: name, Prefix: host.String(), Purpose: v1alpha1.PurposeMeshIP},
	}
	wgKey, _ := wgtypes.GeneratePrivateKey()
	ctlKey, _ := wgtypes.GeneratePrivateKey()
	mn := &v1alpha1.MeshNode{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "MeshNode"},
		ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: owner},
		Spec: v1alpha1.MeshNodeSpec{
			PublicKey: wgKey.PublicKey().String(), ControlKey: ctlKey.PublicKey().String(),
			MeshIPs: []string{mesh.String()}, PodCIDRs: []string{pods.String()},
		},
	}
	for _, obj := range []any{claim, mn} {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{Object: m}
		gvr := v1alpha1.IPClaimResource
		if u.GetKind() == "MeshNode" {
			gvr = v1alpha1.MeshNodeResource
		}
		if _, err := l.Dynamic.Resource(gvr).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}
