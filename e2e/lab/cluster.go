package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"golang.org/x/sync/errgroup"

	"github.com/wirelace/wirelace/api/v1alpha1"
)

// Cluster is the lab's picture of a user's cluster across sites: three
// kubelet nodes, "pub" with a public address, "home1" behind a home router
// (cone NAT) and "cloud1" behind a cloud NAT gateway (symmetric), and a
// relay. Wirelace is not installed yet: see Lab.HelmInstall.
type Cluster struct {
	// Nodes are pub, home1 and cloud1, in that order.
	Nodes []*Node
	Relay *Relay
	// Mode is the chart's cni.mode: "standalone", or "chained" after the
	// stand-in primary (bridge + host-local on the Nodes' pod CIDRs).
	Mode string
}

// AddCluster builds a Cluster in a lab made with Options.Helm. The kubelets
// register in parallel.
func (l *Lab) AddCluster(ctx context.Context, mode string) (*Cluster, error) {
	if !l.opts.Helm {
		return nil, fmt.Errorf("AddCluster needs a lab made with Options.Helm")
	}
	if mode != "standalone" && mode != "chained" {
		return nil, fmt.Errorf("cluster mode %q: want standalone or chained", mode)
	}
	c := &Cluster{Mode: mode}
	var err error
	if c.Relay, err = l.AddRelay(ctx, "relay1"); err != nil {
		return nil, err
	}
	home, err := l.AddSite(ctx, "home", NATCone)
	if err != nil {
		return nil, err
	}
	cloud, err := l.AddSite(ctx, "cloud", NATSymmetric)
	if err != nil {
		return nil, err
	}
	common := []NodeOption{WithDaemonSet()}
	if mode == "chained" {
		common = append(common, WithPrimary(PrimaryBridge))
	}
	placement := []struct {
		name string
		opts []NodeOption
	}{
		{"pub", common},
		{"home1", append(slices.Clip(common), InSite(home))},
		{"cloud1", append(slices.Clip(common), InSite(cloud))},
	}
	c.Nodes = make([]*Node, len(placement))
	var g errgroup.Group
	for i, p := range placement {
		g.Go(func() (err error) {
			c.Nodes[i], err = l.AddNode(ctx, p.name, p.opts...)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return c, nil
}

// MakeGateway does the operator's part of the API server's gateway (see
// RouteControlPlaneVia) with gw, the cluster's public node: the API
// server's network routes the other nodes' addresses and IPv4 pod CIDRs
// to gw, and a RouteGrant lets gw advertise ControlPlaneNetwork to the
// mesh (the chart's daemon.advertiseGrantedCIDRs picks it up).
func (c *Cluster) MakeGateway(ctx context.Context) error {
	gw := c.Nodes[0]
	l := gw.lab
	var remote []netip.Prefix
	for _, n := range c.Nodes[1:] {
		remote = append(remote, netip.PrefixFrom(n.IP, 32))
		node, err := l.Core.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, s := range node.Spec.PodCIDRs {
			if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
				remote = append(remote, p)
			}
		}
	}
	if err := l.RouteControlPlaneVia(ctx, gw, remote...); err != nil {
		return err
	}
	grant := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "RouteGrant",
		"metadata": map[string]any{"name": "control-plane-gateway"},
		"spec":     map[string]any{"nodeName": gw.Name, "cidrs": []any{ControlPlaneNetwork.String()}},
	}}
	if _, err := l.Dynamic.Resource(v1alpha1.RouteGrantResource).Create(ctx, grant, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("RouteGrant for the gateway %s: %w", gw.Name, err)
	}
	return nil
}

// WebDeployment runs replicas of the httpd image, at most one per node,
// ready once the kubelet (on the node, so through Wirelace's routes too)
// gets an answer.
func WebDeployment(replicas int) *appsv1.Deployment {
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
						Image:           HTTPDImage,
						ImagePullPolicy: corev1.PullNever,
						Ports:           []corev1.ContainerPort{{ContainerPort: 8080}},
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
