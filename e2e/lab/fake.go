package lab

import (
	"context"
	"fmt"
	"net/netip"

	"golang.org/x/sync/errgroup"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/kube"
)

// fakeCreators is how many fake nodes AddFakeNodes creates at once.
const fakeCreators = 16

// AddFakeNodes adds fake nodes from up to (not including) to, several at
// a time, and returns the first error.
func (l *Lab) AddFakeNodes(ctx context.Context, from, to int) error {
	var g errgroup.Group
	g.SetLimit(fakeCreators)
	for i := from; i < to; i++ {
		g.Go(func() error { return l.AddFakeNode(ctx, i) })
	}
	return g.Wait()
}

// FakeNodeName is fake node i's name.
func FakeNodeName(i int) string { return fmt.Sprintf("fake-%03d", i) }

// FakeAddrs are fake node i's mesh IP and pod CIDR.
func FakeAddrs(i int) (mesh netip.Addr, pods netip.Prefix) {
	mesh = netip.AddrFrom4([4]byte{10, 77, 200 + byte(i/250), byte(1 + i%250)})
	pods = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 128 + byte(i/256), byte(i % 256), 0}), 24)
	return mesh, pods
}

// AddFakeNode registers node i (0 to 999) as a kubelet and its wirelaced
// would, without either: the Node with its pod CIDR, an IPClaim for its
// mesh IP, its MeshNode. It has no endpoints, so nothing is ever sent to
// it; scale tests and benchmarks watch real daemons take it in.
func (l *Lab) AddFakeNode(ctx context.Context, i int) error {
	name := FakeNodeName(i)
	mesh, pods := FakeAddrs(i)
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

// RekeyFakeNode gives fake node i a new WireGuard key in its MeshNode, as
// a node that re-keys would, and returns its old and new public key.
func (l *Lab) RekeyFakeNode(ctx context.Context, i int) (old, key string, err error) {
	priv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return "", "", err
	}
	key = priv.PublicKey().String()
	res := l.Dynamic.Resource(v1alpha1.MeshNodeResource)
	name := FakeNodeName(i)
	u, err := res.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", "", fmt.Errorf("get MeshNode %s: %w", name, err)
	}
	old, _, err = unstructured.NestedString(u.Object, "spec", "publicKey")
	if err != nil {
		return "", "", fmt.Errorf("MeshNode %s: %w", name, err)
	}
	if err := unstructured.SetNestedField(u.Object, key, "spec", "publicKey"); err != nil {
		return "", "", err
	}
	if _, err := res.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		return "", "", fmt.Errorf("update MeshNode %s: %w", name, err)
	}
	return old, key, nil
}
