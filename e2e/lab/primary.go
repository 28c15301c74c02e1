package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/wirelace/wirelace/daemon/kube"
)

// PrimaryCNI is a stand-in for the primary CNI (Cilium on EKS Hybrid
// Nodes) that wirelace is chained after: a reference plugin with
// host-local IPAM, on address ranges Wirelace does not know in advance.
type PrimaryCNI string

// The stand-ins: the reference bridge and ptp plugins.
const (
	PrimaryBridge PrimaryCNI = "bridge"
	PrimaryPTP    PrimaryCNI = "ptp"
)

// nextPrimaryRanges hands a node its primary CNI's pod ranges: one IPv4
// /24 and one IPv6 /64, apart from every Wirelace pool.
func (l *Lab) nextPrimaryRanges() []netip.Prefix {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.primaries++
	k := byte(l.primaries)
	return []netip.Prefix{
		netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, k, 0}), 24),
		netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x99, 7: k}), 64),
	}
}

// primaryConfList is the primary CNI's own conflist, as the primary's
// agent writes it (Cilium's 05-cilium.conflist); wirelace-install then
// inserts wirelace into it.
func (n *Node) primaryConfList() []byte {
	ranges := []any{}
	for _, r := range n.PrimaryRanges {
		ranges = append(ranges, []any{map[string]any{"subnet": r.String()}})
	}
	ipam := map[string]any{
		"type":    "host-local",
		"ranges":  ranges,
		"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}, map[string]any{"dst": "::/0"}},
		"dataDir": filepath.Join(n.Dir, "cni", "host-local"),
	}
	primary := map[string]any{"type": string(n.Primary), "ipMasq": false, "ipam": ipam}
	if n.Primary == PrimaryBridge {
		primary["bridge"] = "cni0"
		primary["isGateway"] = true
	}
	conf := map[string]any{
		"cniVersion": "1.1.0",
		"name":       "primary",
		"plugins":    []any{primary},
	}
	out, _ := json.MarshalIndent(conf, "", "  ")
	return out
}

// writeKubeletPrimary installs the primary CNI on a kubelet node as its
// agent would once the node has its pod CIDRs (Cilium with
// ipam.mode=kubernetes): host-local on Node.spec.podCIDRs, in
// 05-primary.conflist, which the chart's installer then extends.
func (n *Node) writeKubeletPrimary(node *corev1.Node) error {
	n.PrimaryRanges = nil
	for _, c := range node.Spec.PodCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("node %s: pod CIDR %q: %w", n.Name, c, err)
		}
		n.PrimaryRanges = append(n.PrimaryRanges, p)
	}
	return os.WriteFile(filepath.Join(n.Kubelet.CNIConfDir, PrimaryConfFile), n.primaryConfList(), 0o644)
}

// PrimaryConfFile is the primary CNI's conflist on kubelet nodes.
const PrimaryConfFile = "05-primary.conflist"

// installChained writes the primary's conflist and runs the real
// wirelace-install on the node's CNI directory, as the DaemonSet's install
// container does, to chain wirelace after it.
func (n *Node) installChained(ctx context.Context) error {
	dir := filepath.Dir(n.confListPath())
	if err := os.WriteFile(n.confListPath(), n.primaryConfList(), 0o644); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, filepath.Join(n.lab.opts.Root, "bin", "wirelace-install"),
		"--mode", "chained", "--once", "--conf-dir", dir, "--binaries", "",
		"--socket", n.Socket, "--status-file", filepath.Join(n.Dir, "install-status.json")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("wirelace-install on %s: %v: %s", n.Name, err, out)
	}
	return nil
}

// AddCiliumNodes installs the stand-in CiliumNode CRD
// (e2e/testdata/ciliumnode-crd.yaml) and, for each node with a primary CNI,
// a CiliumNode with its primary's ranges as spec.ipam.podCIDRs. Call it
// before the daemons start: they look for the CRD at start.
func (l *Lab) AddCiliumNodes(ctx context.Context, nodes map[string]*Node) error {
	var crd unstructured.Unstructured
	if err := readYAML(filepath.Join(l.opts.Root, "e2e", "testdata", "ciliumnode-crd.yaml"), &crd.Object); err != nil {
		return err
	}
	if _, err := l.Dynamic.Resource(crdResource).Create(ctx, &crd, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the CiliumNode CRD: %w", err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := l.Dynamic.Resource(kube.CiliumNodeResource).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("CiliumNode CRD not served: %w", err)
	}
	for _, n := range nodes {
		if n.Primary == "" {
			continue
		}
		var cidrs []any
		for _, r := range n.PrimaryRanges {
			cidrs = append(cidrs, r.String())
		}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cilium.io/v2",
			"kind":       "CiliumNode",
			"metadata":   map[string]any{"name": n.Name},
			"spec":       map[string]any{"ipam": map[string]any{"podCIDRs": cidrs}},
		}}
		if _, err := l.Dynamic.Resource(kube.CiliumNodeResource).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create CiliumNode %s: %w", n.Name, err)
		}
	}
	return nil
}
