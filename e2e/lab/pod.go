package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodNamespace is the Kubernetes namespace of lab pods.
const PodNamespace = "default"

// Pod is a lab pod: a network namespace attached by the real CNI plugins
// through libcni, exactly as a container runtime would, and a Pod object
// scheduled to its node.
type Pod struct {
	Name        string
	Node        *Node
	NetNS       string // name under /run/netns
	ContainerID string
	IfName      string
	UID         string
	// Result is what ADD returned.
	Result *types100.Result
}

// NetnsPath is the pod's network namespace file.
func (p *Pod) NetnsPath() string { return "/run/netns/" + p.NetNS }

// ConfList is the conflist a runtime on a standalone node reads: the
// wirelace plugin with wirelace-ipam, talking to this node's daemon socket.
// (A node with a primary CNI gets the primary's, with wirelace inserted by
// wirelace-install.)
func (n *Node) ConfList() []byte {
	conf := map[string]any{
		"cniVersion": "1.1.0",
		"name":       "wirelace",
		"plugins": []any{
			map[string]any{
				"type":   "wirelace",
				"socket": n.Socket,
				"ipam":   map[string]any{"type": "wirelace-ipam", "socket": n.Socket},
			},
		},
	}
	b, _ := json.MarshalIndent(conf, "", "  ")
	return b
}

// confListPath is where the node's conflist lives (/etc/cni/net.d/ on a
// real node): wirelace's own, or the primary CNI's.
func (n *Node) confListPath() string {
	name := "10-wirelace.conflist"
	if n.Primary != "" {
		name = "05-primary.conflist"
	}
	return filepath.Join(n.Dir, "cni", "net.d", name)
}

// writeConfList writes the node's conflist, as an installer would.
func (n *Node) writeConfList(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(n.confListPath()), 0o755); err != nil {
		return err
	}
	if n.Primary != "" {
		return n.installChained(ctx)
	}
	return os.WriteFile(n.confListPath(), n.ConfList(), 0o644)
}

// CNI returns a libcni handle and the node's conflist, read from its file
// as a runtime reads it. Each call gets its own handle: libcni's is not safe
// to share between goroutines.
func (n *Node) CNI() (*libcni.CNIConfig, *libcni.NetworkConfigList, error) {
	path := n.confListPath()
	list, err := libcni.ConfListFromFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", path, err)
	}
	c := libcni.NewCNIConfigWithCacheDir(n.lab.CNIPath(), filepath.Join(n.Dir, "cni", "cache"), nil)
	return c, list, nil
}

// inNode runs f with the calling thread in the node's network namespace, so
// the plugins libcni executes see the node as their host, as they would
// under a runtime on that node.
func (n *Node) inNode(f func() error) error {
	return ns.WithNetNSPath("/run/netns/"+n.NetNS, func(ns.NetNS) error { return f() })
}

// NewPod creates a pod's namespace and its Pod object (scheduled to this
// node), without networking; AddNetwork attaches it.
func (n *Node) NewPod(ctx context.Context, name string) (*Pod, error) {
	p := &Pod{
		Name:        name,
		Node:        n,
		NetNS:       n.NetNS + "-" + name,
		ContainerID: fmt.Sprintf("%s-%s-%s", n.lab.Prefix, n.Name, name),
		IfName:      "eth0",
	}
	if _, err := run(ctx, "ip", "netns", "add", p.NetNS); err != nil {
		return nil, err
	}
	n.lab.defer_(func() error { return p.removeNetns() })
	if _, err := run(ctx, "ip", "-n", p.NetNS, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	obj, err := n.lab.Core.CoreV1().Pods(PodNamespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:   n.Name,
			Containers: []corev1.Container{{Name: "app", Image: "lab.invalid/app"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create Pod %s: %w", name, err)
	}
	p.UID = string(obj.UID)
	return p, nil
}

// AddPod creates a pod and attaches it (CNI ADD).
func (n *Node) AddPod(ctx context.Context, name string) (*Pod, error) {
	p, err := n.NewPod(ctx, name)
	if err != nil {
		return nil, err
	}
	return p, p.Add(ctx)
}

func (p *Pod) runtimeConf() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: p.ContainerID,
		NetNS:       p.NetnsPath(),
		IfName:      p.IfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", PodNamespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_UID", p.UID},
		},
	}
}

// Add runs CNI ADD for the pod.
func (p *Pod) Add(ctx context.Context) error {
	c, list, err := p.Node.CNI()
	if err != nil {
		return err
	}
	err = p.Node.inNode(func() error {
		res, err := c.AddNetworkList(ctx, list, p.runtimeConf())
		if err != nil {
			return fmt.Errorf("CNI ADD %s: %w", p.Name, err)
		}
		r, err := types100.NewResultFromResult(res)
		if err != nil {
			return err
		}
		p.Result = r
		return nil
	})
	if err != nil {
		return err
	}
	return p.publishIPs(ctx)
}

// AddTimed runs CNI ADD for the pod with conflist (JSON) instead of the
// node's, and returns how long libcni took: for benchmarks that compare
// plugins on the same node. The pod's Pod status is not updated.
func (p *Pod) AddTimed(ctx context.Context, conflist []byte) (time.Duration, error) {
	list, err := libcni.ConfListFromBytes(conflist)
	if err != nil {
		return 0, err
	}
	c := libcni.NewCNIConfigWithCacheDir(p.Node.lab.CNIPath(), filepath.Join(p.Node.Dir, "cni", "cache"), nil)
	var took time.Duration
	err = p.Node.inNode(func() error {
		start := time.Now()
		_, err := c.AddNetworkList(ctx, list, p.runtimeConf())
		took = time.Since(start)
		if err != nil {
			return fmt.Errorf("CNI ADD %s (%s): %w", p.Name, list.Name, err)
		}
		return nil
	})
	return took, err
}

// publishIPs writes the pod's addresses to its Pod status, as the kubelet
// does once the sandbox is up: in chained mode peers check a node's
// announced pod addresses against them.
func (p *Pod) publishIPs(ctx context.Context) error {
	pods := p.Node.lab.Core.CoreV1().Pods(PodNamespace)
	obj, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read Pod %s: %w", p.Name, err)
	}
	obj.Status.Phase = corev1.PodRunning
	obj.Status.PodIPs = nil
	for _, ip := range p.IPs() {
		obj.Status.PodIPs = append(obj.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(obj.Status.PodIPs) > 0 {
		obj.Status.PodIP = obj.Status.PodIPs[0].IP
	}
	if _, err := pods.UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set the IPs of Pod %s: %w", p.Name, err)
	}
	return nil
}

// Check runs CNI CHECK for the pod.
func (p *Pod) Check(ctx context.Context) error {
	c, list, err := p.Node.CNI()
	if err != nil {
		return err
	}
	return p.Node.inNode(func() error { return c.CheckNetworkList(ctx, list, p.runtimeConf()) })
}

// Del runs CNI DEL for the pod.
func (p *Pod) Del(ctx context.Context) error {
	c, list, err := p.Node.CNI()
	if err != nil {
		return err
	}
	return p.Node.inNode(func() error { return c.DelNetworkList(ctx, list, p.runtimeConf()) })
}

// Delete runs CNI DEL, removes the Pod object and the namespace.
func (p *Pod) Delete(ctx context.Context) error {
	if err := p.Del(ctx); err != nil {
		return err
	}
	if err := p.Node.lab.Core.CoreV1().Pods(PodNamespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	return p.removeNetns()
}

func (p *Pod) removeNetns() error {
	if _, err := os.Stat(p.NetnsPath()); os.IsNotExist(err) {
		return nil
	}
	_, err := run(context.Background(), "ip", "netns", "del", p.NetNS)
	return err
}

// CNIStatus runs CNI STATUS on the node.
func (n *Node) CNIStatus(ctx context.Context) error {
	c, list, err := n.CNI()
	if err != nil {
		return err
	}
	return n.inNode(func() error { return c.GetStatusNetworkList(ctx, list) })
}

// CNIGC runs CNI GC on the node with the given pods as the valid attachments.
func (n *Node) CNIGC(ctx context.Context, valid []*Pod) error {
	c, list, err := n.CNI()
	if err != nil {
		return err
	}
	args := &libcni.GCArgs{}
	for _, p := range valid {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: p.ContainerID, IfName: p.IfName})
	}
	return n.inNode(func() error { return c.GCNetworkList(ctx, list, args) })
}

// IPs returns the pod's addresses without prefix length, IPv4 first.
func (p *Pod) IPs() []string {
	var out []string
	if p.Result == nil {
		return nil
	}
	for _, ip := range p.Result.IPs {
		out = append(out, ip.Address.IP.String())
	}
	if len(out) == 2 && strings.Contains(out[0], ":") {
		out[0], out[1] = out[1], out[0]
	}
	return out
}

// Exec runs a command inside the pod's network namespace.
func (p *Pod) Exec(ctx context.Context, argv ...string) (string, error) {
	return run(ctx, append([]string{"ip", "netns", "exec", p.NetNS}, argv...)...)
}

// Ping pings ip from the pod.
func (p *Pod) Ping(ctx context.Context, ip string, count int) error {
	_, err := p.Exec(ctx, "ping", "-n", "-q", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "1", ip)
	return err
}
