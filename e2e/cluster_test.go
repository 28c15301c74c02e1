package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/wirelace/wirelace/e2e/lab"
	"github.com/wirelace/wirelace/netconf"
)

// TestClusterStandalone and TestClusterChained run Wirelace where users run
// it: real Kubernetes nodes (kubelet, containerd, runc), one public, one
// behind a home router (cone NAT) and one behind a cloud NAT gateway
// (symmetric), plus a relay; Wirelace comes from the Dockerfile's image and
// `helm install` of the chart, as the DaemonSet. Pods across the NATs reach
// each other, `kubectl logs` and `kubectl exec` reach pods on the NATed
// nodes through a gateway node (as EKS Hybrid Nodes need), deleting a pod
// frees its addresses through containerd's CNI DEL, `helm upgrade` rolls
// the DaemonSet under live connections, and `helm uninstall` leaves the
// nodes clean.
func TestClusterStandalone(t *testing.T) { testCluster(t, "standalone") }

// TestClusterChained is the same after a stand-in primary CNI (bridge +
// host-local on the Nodes' pod CIDRs, as Cilium in kubernetes IPAM mode),
// with Wirelace chained into its conflist by the chart's installer.
func TestClusterChained(t *testing.T) { testCluster(t, "chained") }

// The two image tags: install, then upgrade.
const (
	imageTag        = "lab-1"
	imageTagUpgrade = "lab-2"
)

func testCluster(t *testing.T, mode string) {
	ctx := context.Background()
	began := time.Now()
	for _, b := range []string{"wirelace-install", "wirelace", "wirelace-ipam"} {
		if _, err := os.Stat(filepath.Join(repoRoot(t), "bin", b)); err != nil {
			t.Fatalf("bin/%s missing: run the e2e tests through `make test` (it builds first)", b)
		}
	}
	l := newLabWith(t, lab.Options{Helm: true})
	t.Logf("control plane with controllers up in %s", time.Since(began).Round(100*time.Millisecond))

	t0 := time.Now()
	c, err := l.AddCluster(ctx, mode)
	if err != nil {
		t.Fatal(err)
	}
	nodes := c.Nodes
	t.Logf("3 kubelets registered their Nodes (with pod CIDRs) in %s", time.Since(t0).Round(100*time.Millisecond))

	primaries := map[string][]byte{} // node -> the primary's conflist as its agent wrote it
	if mode == "standalone" {
		for _, n := range nodes {
			eventually(t, 30*time.Second, n.Name+" reports the network not ready", func() error {
				ready, msg, err := n.NodeReady(ctx)
				if err != nil || ready || !strings.Contains(msg, "NetworkReady=false") {
					return fmt.Errorf("ready=%v message=%q err=%v", ready, msg, err)
				}
				return nil
			})
		}
	} else {
		for _, n := range nodes {
			b, err := os.ReadFile(filepath.Join(n.Kubelet.CNIConfDir, lab.PrimaryConfFile))
			if err != nil {
				t.Fatal(err)
			}
			primaries[n.Name] = b
		}
	}

	t0 = time.Now()
	if err := l.WirelaceImage(ctx, imageTag, imageTagUpgrade); err != nil {
		t.Fatal(err)
	}
	t.Logf("Wirelace image built from the Dockerfile's list and imported into 3 nodes in %s", time.Since(t0).Round(100*time.Millisecond))

	// The operator's part of the gateway for the API server's network.
	if err := c.MakeGateway(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("helm install", func(t *testing.T) {
		t0 := time.Now()
		if out, err := l.HelmInstall(ctx, "install", l.ChartValues(imageTag, mode)); err != nil {
			t.Fatalf("%v\n%s", err, daemonSetState(ctx, l))
		} else {
			t.Logf("helm install (--wait) took %s:\n%s", time.Since(t0).Round(100*time.Millisecond), firstLines(out, 6))
		}
		for _, n := range nodes {
			if err := n.WaitNodeReady(ctx, 60*time.Second); err != nil {
				t.Fatal(err)
			}
			eventually(t, 60*time.Second, n.Name+"'s wirelaced is ready with both peers", func() error {
				s, err := n.Status(ctx)
				if err != nil {
					return err
				}
				if !s.Ready || len(s.Peers) != len(nodes)-1 {
					return fmt.Errorf("ready=%v (%s) peers=%d", s.Ready, s.Reason, len(s.Peers))
				}
				if s.Install == nil || s.Install.State != netconf.InstallInstalled {
					return fmt.Errorf("install status %+v", s.Install)
				}
				return nil
			})
		}
		t.Logf("all Nodes Ready, daemons meshed %s after helm install began", time.Since(t0).Round(100*time.Millisecond))
		if mode == "chained" {
			for _, n := range nodes {
				b, err := os.ReadFile(filepath.Join(n.Kubelet.CNIConfDir, lab.PrimaryConfFile))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), `"type": "wirelace"`) && !strings.Contains(string(b), `"type":"wirelace"`) {
					t.Errorf("%s: the chart's installer did not chain wirelace into %s:\n%s", n.Name, lab.PrimaryConfFile, b)
				}
			}
		}
	})
	if t.Failed() {
		return
	}

	var web []corev1.Pod
	t.Run("Deployment over the three nodes", func(t *testing.T) {
		t0 := time.Now()
		if _, err := l.Core.AppsV1().Deployments(lab.PodNamespace).Create(ctx, lab.WebDeployment(len(nodes)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		web = waitDeploymentReady(t, l, "web", len(nodes), 120*time.Second)
		t.Logf("%d replicas Ready in %s", len(web), time.Since(t0).Round(100*time.Millisecond))
		byNode := map[string]corev1.Pod{}
		for _, p := range web {
			byNode[p.Spec.NodeName] = p
		}
		for _, n := range nodes {
			p, ok := byNode[n.Name]
			if !ok {
				t.Fatalf("no web pod on %s: %v", n.Name, podPlaces(web))
			}
			node, err := l.Core.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Status.PodIPs) != len(node.Spec.PodCIDRs) {
				t.Errorf("pod %s has IPs %v, want one in each of its Node's podCIDRs %v", p.Name, p.Status.PodIPs, node.Spec.PodCIDRs)
			}
			for _, ip := range p.Status.PodIPs {
				if !coveredBy(ip.IP, node.Spec.PodCIDRs) {
					t.Errorf("pod %s has IP %s outside its Node's podCIDRs %v", p.Name, ip.IP, node.Spec.PodCIDRs)
				}
			}
		}
	})
	if t.Failed() {
		return
	}
	webOn := func(node string) corev1.Pod {
		for _, p := range web {
			if p.Spec.NodeName == node {
				return p
			}
		}
		t.Fatalf("no web pod on %s", node)
		return corev1.Pod{}
	}

	t.Run("every pod reaches every pod", func(t *testing.T) {
		t0 := time.Now()
		var urls []string
		want := map[string]string{} // URL -> the pod that must answer
		for _, p := range web {
			for _, ip := range p.Status.PodIPs {
				u := "http://" + netip.AddrPortFrom(netip.MustParseAddr(ip.IP), 8080).String() + "/"
				urls = append(urls, u)
				want[u] = p.Name
			}
		}
		if len(urls) != 2*len(nodes) {
			t.Fatalf("want an IPv4 and an IPv6 address per web pod, have %v", urls)
		}
		for _, n := range nodes {
			if _, err := l.Core.CoreV1().Pods(lab.PodNamespace).Create(ctx, clientPod("probe-"+n.Name, n.Name, urls), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range nodes {
			name := "probe-" + n.Name
			phase := waitPodDone(t, l, name, 90*time.Second)
			logs := n.PodLogs(lab.PodNamespace, name)
			if phase != corev1.PodSucceeded {
				t.Errorf("client on %s: %s; its output:\n%s", n.Name, phase, logs)
				continue
			}
			for _, u := range urls {
				if !strings.Contains(logs, "OK "+u+" host="+want[u]+" ") {
					t.Errorf("client on %s: no answer from %s at %s in its output:\n%s", n.Name, want[u], u, logs)
				}
			}
		}
		t.Logf("%d clients fetched from %d addresses each in %s", len(nodes), len(urls), time.Since(t0).Round(100*time.Millisecond))
	})

	t.Run("kubectl logs and exec reach pods on NATed nodes through the gateway", func(t *testing.T) {
		for _, n := range nodes {
			p := webOn(n.Name)
			logs, err := l.Kubectl(ctx, "--namespace", lab.PodNamespace, "logs", p.Name)
			if err != nil || !strings.Contains(logs, "httpd: serving on") {
				t.Errorf("kubectl logs %s (on %s): %v: %q", p.Name, n.Name, err, logs)
			}
			out, err := l.Kubectl(ctx, "--namespace", lab.PodNamespace, "exec", p.Name, "--", "/httpd", "-get", "http://127.0.0.1:8080/", "-timeout", "5s")
			if err != nil || !strings.Contains(out, "host="+p.Name+" ") {
				t.Errorf("kubectl exec %s (on %s): %v: %q", p.Name, n.Name, err, out)
			}
		}
		// The API server's network reaches pods on NATed nodes too
		// (webhooks, metrics scrapes), from its own address.
		var urls []string
		for _, n := range nodes[1:] {
			for _, ip := range webOn(n.Name).Status.PodIPs {
				if a := netip.MustParseAddr(ip.IP); a.Is4() {
					urls = append(urls, "http://"+netip.AddrPortFrom(a, 8080).String()+"/")
				}
			}
		}
		if out, err := l.FetchFromControlPlane(ctx, urls...); err != nil {
			t.Errorf("from the API server's network: %v\n%s", err, out)
		}
	})

	t.Run("deleting a pod frees its addresses", func(t *testing.T) {
		n := nodes[2] // behind the symmetric NAT
		pod := webOn(n.Name)
		held := func() []string {
			return heldAddrs(ctx, t, n, mode, pod)
		}
		if got := held(); len(got) == 0 {
			t.Fatalf("%s's daemon holds no addresses for pod %s (%v)", n.Name, pod.Name, pod.Status.PodIPs)
		}
		t0 := time.Now()
		if err := l.Core.CoreV1().Pods(lab.PodNamespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(1))}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the daemon releases "+pod.Name+"'s addresses", func() error {
			if got := held(); len(got) > 0 {
				return fmt.Errorf("still held: %v", got)
			}
			return nil
		})
		t.Logf("addresses of %s released %s after the delete", pod.Name, time.Since(t0).Round(100*time.Millisecond))
		web = waitDeploymentReady(t, l, "web", len(nodes), 60*time.Second)
	})
	if t.Failed() {
		return
	}

	t.Run("helm upgrade keeps established connections", func(t *testing.T) {
		// One long-lived connection from each node to the web pod on the
		// next, held open across the rolling update of every daemon.
		streams := map[string]*lab.Node{}
		for i, n := range nodes {
			target := webOn(nodes[(i+1)%len(nodes)].Name)
			base := "http://" + netip.AddrPortFrom(netip.MustParseAddr(target.Status.PodIP), 8080).String()
			name := "stream-" + n.Name
			if _, err := l.Core.CoreV1().Pods(lab.PodNamespace).Create(ctx, streamPod(name, n.Name, base), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			streams[name] = n
		}
		for name, n := range streams {
			eventually(t, 60*time.Second, name+" streams", func() error {
				if reads := streamReads(n.PodLogs(lab.PodNamespace, name)); reads < 5 {
					return fmt.Errorf("%d reads so far", reads)
				}
				return nil
			})
		}
		before := daemonPods(ctx, t, l)
		t0 := time.Now()
		if out, err := l.HelmInstall(ctx, "upgrade", l.ChartValues(imageTagUpgrade, mode)); err != nil {
			t.Fatalf("%v\n%s", err, daemonSetState(ctx, l))
		} else {
			t.Logf("helm upgrade (--wait) took %s:\n%s", time.Since(t0).Round(100*time.Millisecond), firstLines(out, 3))
		}
		after := daemonPods(ctx, t, l)
		for _, n := range nodes {
			if before[n.Name].UID == after[n.Name].UID {
				t.Errorf("%s: the daemon pod %s was not replaced", n.Name, after[n.Name].Name)
			}
			if img := after[n.Name].Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+imageTagUpgrade) {
				t.Errorf("%s: daemon pod runs %s after the upgrade", n.Name, img)
			}
		}
		for name, n := range streams {
			reads := streamReads(n.PodLogs(lab.PodNamespace, name))
			eventually(t, 30*time.Second, name+" still reads on its one connection", func() error {
				logs := n.PodLogs(lab.PodNamespace, name)
				if strings.Contains(logs, "BROKEN") {
					t.Fatalf("%s: the connection broke during the upgrade:\n%s", name, lastLines(logs, 5))
				}
				if r := streamReads(logs); r <= reads+10 {
					return fmt.Errorf("%d reads, %d at the end of the upgrade", r, reads)
				}
				return nil
			})
			p, err := l.Core.CoreV1().Pods(lab.PodNamespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning {
				t.Errorf("%s: %v %s", name, err, podStates([]corev1.Pod{*p}))
			}
			t.Logf("%s: %s", name, lastLines(n.PodLogs(lab.PodNamespace, name), 1))
		}
		for name := range streams {
			l.Core.CoreV1().Pods(lab.PodNamespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
		}
	})

	t.Run("helm uninstall leaves the nodes clean", func(t *testing.T) {
		t0 := time.Now()
		if out, err := l.Helm(ctx, "uninstall", lab.ChartRelease, "--namespace", lab.Namespace, "--cascade", "foreground", "--wait", "--timeout", "3m"); err != nil {
			t.Fatal(err)
		} else {
			t.Logf("helm uninstall: %s", strings.TrimSpace(out))
		}
		// The post-delete hook: a DaemonSet whose pods are Ready once
		// their init containers cleaned their node.
		eventually(t, 120*time.Second, "the cleanup hook ran on every node", func() error {
			ds, err := l.Core.AppsV1().DaemonSets(lab.Namespace).Get(ctx, "wirelace-cleanup", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if ds.Status.DesiredNumberScheduled != int32(len(nodes)) || ds.Status.NumberReady != int32(len(nodes)) {
				return fmt.Errorf("desired %d ready %d; %s", ds.Status.DesiredNumberScheduled, ds.Status.NumberReady, daemonSetState(ctx, l))
			}
			return nil
		})
		t.Logf("cleanup done on all nodes %s after helm uninstall began", time.Since(t0).Round(100*time.Millisecond))
		for _, n := range nodes {
			for _, f := range []string{netconf.PluginType, netconf.IPAMType} {
				if _, err := os.Stat(filepath.Join(n.Kubelet.CNIBinDir, f)); !os.IsNotExist(err) {
					t.Errorf("%s: plugin %s still in the CNI bin dir (%v)", n.Name, f, err)
				}
			}
			if mode == "chained" {
				b, err := os.ReadFile(filepath.Join(n.Kubelet.CNIConfDir, lab.PrimaryConfFile))
				if err != nil || !bytes.Equal(b, primaries[n.Name]) {
					t.Errorf("%s: primary conflist not restored byte for byte (%v):\n%s\nwant:\n%s", n.Name, err, b, primaries[n.Name])
				}
			} else if left, _ := filepath.Glob(filepath.Join(n.Kubelet.CNIConfDir, "*")); len(left) > 0 {
				t.Errorf("%s: CNI conf dir still holds %v", n.Name, left)
			}
			if out, _ := n.Exec(ctx, "ip", "link", "show", "lace0"); strings.Contains(out, "lace0") {
				t.Errorf("%s: lace0 still there:\n%s", n.Name, out)
			}
			if out, err := n.Exec(ctx, "nft", "list", "tables"); err != nil || strings.Contains(out, "wirelace") {
				t.Errorf("%s: nftables after cleanup (%v):\n%s", n.Name, err, out)
			}
			if out, err := n.Exec(ctx, "ip", "rule", "show"); err != nil || strings.Contains(out, "lookup 119") {
				t.Errorf("%s: policy rules after cleanup (%v):\n%s", n.Name, err, out)
			}
		}
		if err := l.Core.AppsV1().DaemonSets(lab.Namespace).Delete(ctx, "wirelace-cleanup", metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
	})
	t.Logf("testCluster(%s) took %s", mode, time.Since(began).Round(time.Second))
}

// heldAddrs returns the addresses n's daemon holds for pod: its IPAM
// allocations (standalone) or chained registrations.
func heldAddrs(ctx context.Context, t *testing.T, n *lab.Node, mode string, pod corev1.Pod) []string {
	t.Helper()
	mine := func(name string, ips []string) bool {
		return name == pod.Name || slices.ContainsFunc(pod.Status.PodIPs, func(ip corev1.PodIP) bool { return slices.Contains(ips, ip.IP) })
	}
	c := netconf.NewClient(n.Socket)
	var out []string
	if mode == "chained" {
		list, err := c.Registrations(ctx)
		if err != nil {
			t.Fatalf("registrations on %s: %v", n.Name, err)
		}
		for _, r := range list.Registrations {
			if mine(r.PodName, r.IPs) {
				out = append(out, r.IPs...)
			}
		}
		return out
	}
	list, err := c.Allocations(ctx)
	if err != nil {
		t.Fatalf("allocations on %s: %v", n.Name, err)
	}
	for _, a := range list.Allocations {
		if mine(a.PodName, a.IPs) {
			out = append(out, a.IPs...)
		}
	}
	return out
}

// daemonPods returns the running wirelaced pod of each node.
func daemonPods(ctx context.Context, t *testing.T, l *lab.Lab) map[string]corev1.Pod {
	t.Helper()
	list, err := l.Core.CoreV1().Pods(lab.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=wirelace,app.kubernetes.io/component=node"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Pod{}
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out[p.Spec.NodeName] = p
		}
	}
	return out
}

// daemonSetState summarises Wirelace's pods for failure messages.
func daemonSetState(ctx context.Context, l *lab.Lab) string {
	list, err := l.Core.CoreV1().Pods(lab.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	return "pods in " + lab.Namespace + ": " + podStates(list.Items)
}

// streamPod holds one connection to base's /stream open from node.
func streamPod(name, node, base string) *corev1.Pod {
	p := clientPod(name, node, nil)
	p.Spec.Containers[0].Args = []string{"-stream", base, "-for", "10m"}
	return p
}

// streamReads is the last read count a stream pod reported (in the CRI
// log format, each line after a timestamp and stream name).
func streamReads(logs string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		i := strings.Index(line, "ok reads=")
		if i < 0 {
			continue
		}
		var r int
		if _, err := fmt.Sscanf(line[i:], "ok reads=%d", &r); err == nil {
			n = r
		}
	}
	return n
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// clientPod runs the httpd image in client mode on node, fetching urls.
func clientPod(name, node string, urls []string) *corev1.Pod {
	args := []string{"-timeout", "40s"}
	for _, u := range urls {
		args = append(args, "-get", u)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			NodeSelector:                  map[string]string{corev1.LabelHostname: node},
			TerminationGracePeriodSeconds: ptr.To(int64(1)),
			Containers: []corev1.Container{{
				Name:            "client",
				Image:           lab.HTTPDImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            args,
			}},
		},
	}
}

// waitDeploymentReady waits until the Deployment has want ready replicas
// and returns its running pods.
func waitDeploymentReady(t *testing.T, l *lab.Lab, name string, want int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	ctx := context.Background()
	var pods []corev1.Pod
	eventually(t, timeout, fmt.Sprintf("Deployment %s has %d ready pods", name, want), func() error {
		d, err := l.Core.AppsV1().Deployments(lab.PodNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		list, err := l.Core.CoreV1().Pods(lab.PodNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return err
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && podReady(p) {
				pods = append(pods, p)
			}
		}
		if int(d.Status.ReadyReplicas) != want || len(pods) != want {
			return fmt.Errorf("readyReplicas %d, ready pods %v; all pods: %s", d.Status.ReadyReplicas, podPlaces(pods), podStates(list.Items))
		}
		return nil
	})
	return pods
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitPodDone waits until a pod succeeded or failed and returns the phase.
func waitPodDone(t *testing.T, l *lab.Lab, name string, timeout time.Duration) corev1.PodPhase {
	t.Helper()
	var phase corev1.PodPhase
	eventually(t, timeout, "pod "+name+" completes", func() error {
		p, err := l.Core.CoreV1().Pods(lab.PodNamespace).Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || err != nil {
			return fmt.Errorf("get: %v", err)
		}
		phase = p.Status.Phase
		if phase != corev1.PodSucceeded && phase != corev1.PodFailed {
			return fmt.Errorf("%s", podStates([]corev1.Pod{*p}))
		}
		return nil
	})
	return phase
}

func podPlaces(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name+"@"+p.Spec.NodeName)
	}
	return out
}

// podStates summarises pods for failure messages: phase, node, and why a
// container is waiting (an image or sandbox problem shows there).
func podStates(pods []corev1.Pod) string {
	var out []string
	for _, p := range pods {
		s := fmt.Sprintf("%s@%s %s", p.Name, p.Spec.NodeName, p.Status.Phase)
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue && c.Message != "" {
				s += fmt.Sprintf(" [%s: %s]", c.Type, c.Message)
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				s += fmt.Sprintf(" [%s waiting: %s %s]", cs.Name, w.Reason, w.Message)
			}
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}
