package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/wirelace/wirelace/e2e/lab"
	"github.com/wirelace/wirelace/netconf"
)

// newKubeletLab is newLab for a lab whose nodes may be real Kubernetes
// nodes: it also runs kube-controller-manager and kube-scheduler, and needs
// the installer besides the daemon.
func newKubeletLab(t *testing.T) *lab.Lab {
	t.Helper()
	for _, b := range []string{"wirelace-install", "wirelace", "wirelace-ipam"} {
		if _, err := os.Stat(filepath.Join(repoRoot(t), "bin", b)); err != nil {
			t.Fatalf("bin/%s missing: run the e2e tests through `make test` (it builds first)", b)
		}
	}
	return newLabWith(t, lab.Options{Kubelets: true})
}

// TestKubeletNodes runs Wirelace where users run it: on real Kubernetes
// nodes (kubelet, containerd, runc), one public, one behind a home router
// (cone NAT) and one behind a cloud NAT gateway (symmetric), with a relay.
// The kubelets register their Nodes; wirelaced runs on each and
// wirelace-install puts its CNI config in place; then a Deployment spread
// over the nodes runs, every pod reaches every other, and a deleted pod's
// address comes back to the pool through containerd's CNI DEL.
func TestKubeletNodes(t *testing.T) {
	ctx := context.Background()
	began := time.Now()
	l := newKubeletLab(t)
	t.Logf("control plane with controllers up in %s", time.Since(began).Round(100*time.Millisecond))

	if _, err := l.AddRelay(ctx, "relay1"); err != nil {
		t.Fatal(err)
	}
	home, err := l.AddSite(ctx, "home", lab.NATCone)
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := l.AddSite(ctx, "cloud", lab.NATSymmetric)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"pub", "home1", "cloud1"}
	placement := map[string][]lab.NodeOption{
		"pub":    {lab.WithKubelet()},
		"home1":  {lab.WithKubelet(), lab.InSite(home)},
		"cloud1": {lab.WithKubelet(), lab.InSite(cloud)},
	}
	t0 := time.Now()
	nodes := make([]*lab.Node, len(names))
	var g errgroup.Group
	for i, name := range names {
		g.Go(func() (err error) {
			nodes[i], err = l.AddNode(ctx, name, placement[name]...)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("3 kubelets registered their Nodes (with pod CIDRs) in %s", time.Since(t0).Round(100*time.Millisecond))

	t.Run("NotReady without a CNI config", func(t *testing.T) {
		for _, n := range nodes {
			eventually(t, 30*time.Second, n.Name+" reports the network not ready", func() error {
				ready, msg, err := n.NodeReady(ctx)
				if err != nil || ready || !strings.Contains(msg, "NetworkReady=false") {
					return fmt.Errorf("ready=%v message=%q err=%v", ready, msg, err)
				}
				return nil
			})
		}
	})
	if t.Failed() {
		return
	}

	for _, n := range nodes {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if err := n.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// A running daemon is not enough: the runtime needs the config.
	for _, n := range nodes {
		if ready, msg, _ := n.NodeReady(ctx); ready {
			t.Fatalf("%s is Ready before any CNI config was installed (%q)", n.Name, msg)
		}
	}

	t.Run("Ready once wirelace-install installed the config", func(t *testing.T) {
		t0 := time.Now()
		for _, n := range nodes {
			if err := n.InstallCNI(ctx); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{filepath.Join(n.Kubelet.CNIConfDir, "10-wirelace.conflist"),
				filepath.Join(n.Kubelet.CNIBinDir, netconf.PluginType), filepath.Join(n.Kubelet.CNIBinDir, netconf.IPAMType)} {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("%s: after wirelace-install: %v", n.Name, err)
				}
			}
		}
		for _, n := range nodes {
			if err := n.WaitNodeReady(ctx, 60*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("all Nodes Ready %s after the installs", time.Since(t0).Round(100*time.Millisecond))
	})
	if t.Failed() {
		return
	}

	var web []corev1.Pod
	t.Run("Deployment over the three nodes", func(t *testing.T) {
		t0 := time.Now()
		if _, err := l.Core.AppsV1().Deployments(lab.PodNamespace).Create(ctx, webDeployment(len(nodes)), metav1.CreateOptions{}); err != nil {
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
		// One client pod per node, scheduled there: it fetches from every
		// web pod (its own node's too) over both families.
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

	t.Run("deleting a pod frees its addresses", func(t *testing.T) {
		n := nodes[2] // behind the symmetric NAT
		var pod corev1.Pod
		for _, p := range web {
			if p.Spec.NodeName == n.Name {
				pod = p
			}
		}
		held := func() []string {
			list, err := netconf.NewClient(n.Socket).Allocations(ctx)
			if err != nil {
				t.Fatalf("allocations on %s: %v", n.Name, err)
			}
			var ips []string
			for _, a := range list.Allocations {
				if a.PodName == pod.Name || slices.ContainsFunc(pod.Status.PodIPs, func(ip corev1.PodIP) bool { return slices.Contains(a.IPs, ip.IP) }) {
					ips = append(ips, a.IPs...)
				}
			}
			return ips
		}
		if got := held(); len(got) == 0 {
			t.Fatalf("%s's daemon holds no allocation for pod %s (%v)", n.Name, pod.Name, pod.Status.PodIPs)
		}
		t0 := time.Now()
		if err := l.Core.CoreV1().Pods(lab.PodNamespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(1))}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the daemon releases "+pod.Name+"'s addresses", func() error {
			if got := held(); len(got) > 0 {
				return fmt.Errorf("still allocated: %v", got)
			}
			return nil
		})
		t.Logf("addresses of %s released %s after the delete", pod.Name, time.Since(t0).Round(100*time.Millisecond))
		// The ReplicaSet replaces it on the same node, with an address again.
		waitDeploymentReady(t, l, "web", len(nodes), 60*time.Second)
	})
	t.Logf("TestKubeletNodes took %s", time.Since(began).Round(time.Second))
}

// webDeployment runs replicas of the httpd image, at most one per node.
func webDeployment(replicas int) *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To(int64(1)),
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
							TopologyKey:   corev1.LabelHostname,
						}},
					}},
					Containers: []corev1.Container{{
						Name:            "httpd",
						Image:           lab.HTTPDImage,
						ImagePullPolicy: corev1.PullNever,
						Ports:           []corev1.ContainerPort{{ContainerPort: 8080}},
						// The kubelet probes from the node: its route to
						// the pod is Wirelace's too.
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
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
