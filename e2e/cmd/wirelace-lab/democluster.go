package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wirelace/wirelace/e2e/lab"
)

// demoCluster is the demo's second part: Wirelace doing its real job. Real
// Kubernetes nodes (kubelet, containerd, runc) at a public site, behind a
// cone NAT and behind a symmetric NAT get Wirelace from its image and
// `helm install`, then run a Deployment; kubectl shows the nodes and pods,
// and each node's daemon the path to each other node.
func demoCluster(ctx context.Context, root string, keep bool) error {
	say("A real cluster: three kubelet nodes at three sites, Wirelace installed with helm")
	return withLab(ctx, lab.Options{Root: root, Helm: true}, keep, func(l *lab.Lab) error { return demoHelm(ctx, l) })
}

func demoHelm(ctx context.Context, l *lab.Lab) error {
	c, err := l.AddCluster(ctx, "standalone")
	if err != nil {
		return err
	}
	for _, n := range c.Nodes {
		where := "public address"
		if n.Site != nil {
			where = fmt.Sprintf("behind a %s NAT (router %s)", n.Site.NAT, n.Site.WAN)
		}
		fmt.Printf("  %s: kubelet registered, %s, %s\n", n.Name, n.IP, where)
	}
	if err := c.MakeGateway(ctx); err != nil {
		return err
	}
	if err := l.WirelaceImage(ctx, "demo"); err != nil {
		return err
	}
	say("helm install wirelace install/helm/wirelace (the image built from the Dockerfile's list, imported into each node)")
	start := time.Now()
	if _, err := l.HelmInstall(ctx, "install", l.ChartValues("demo", c.Mode)); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := n.WaitNodeReady(ctx, 60*time.Second); err != nil {
			return err
		}
	}
	fmt.Printf("  DaemonSet ready and every Node Ready %s after helm install began\n", time.Since(start).Round(100*time.Millisecond))

	if _, err := l.Core.AppsV1().Deployments(lab.PodNamespace).Create(ctx, lab.WebDeployment(len(c.Nodes)), metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := waitDeployment(ctx, l, "web", len(c.Nodes), 2*time.Minute); err != nil {
		return err
	}
	waitPathsSettled(ctx, c.Nodes, 20*time.Second)

	say("kubectl get nodes,pods -o wide --all-namespaces")
	out, err := l.Kubectl(ctx, "get", "nodes,pods", "-o", "wide", "--all-namespaces")
	if err != nil {
		return err
	}
	fmt.Println(indent(out))

	say("Paths between the nodes, from each node's wirelaced (in its DaemonSet pod)")
	if err := printPaths(ctx, c.Nodes); err != nil {
		return err
	}

	cloud := c.Nodes[2]
	web, err := l.Core.CoreV1().Pods(lab.PodNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return err
	}
	pod := ""
	args := []string{"exec", "", "--", "/httpd", "-timeout", "20s"}
	for _, p := range web.Items {
		if p.Spec.NodeName == cloud.Name {
			pod = p.Name
		}
		for _, ip := range p.Status.PodIPs {
			args = append(args, "-get", "http://"+netip.AddrPortFrom(netip.MustParseAddr(ip.IP), 8080).String()+"/")
		}
	}
	if pod == "" {
		return fmt.Errorf("no web pod on %s", cloud.Name)
	}
	args[1] = pod
	say("kubectl exec %s (on %s, behind the symmetric NAT: through the gateway %s and the mesh) -- fetch every web pod", pod, cloud.Name, c.Nodes[0].Name)
	out, err = l.Kubectl(ctx, args...)
	if err != nil {
		return err
	}
	fmt.Println(indent(out))
	fmt.Println("  the pod behind the symmetric NAT reaches every web pod; kubectl reached it through the API server")
	return nil
}

// waitDeployment waits until a Deployment has want ready replicas.
func waitDeployment(ctx context.Context, l *lab.Lab, name string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		d, err := l.Core.AppsV1().Deployments(lab.PodNamespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil && int(d.Status.ReadyReplicas) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("deployment %s not ready after %s (%v)", name, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
