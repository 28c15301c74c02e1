package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/wirelace/wirelace/api/v1alpha1"
	"github.com/wirelace/wirelace/daemon/kube"
	"github.com/wirelace/wirelace/e2e/lab"
)

// nodeClients are API clients with a node's own credentials: the
// ServiceAccount token bound to its Node that its wirelaced uses.
type nodeClients struct {
	core kubernetes.Interface
	dyn  dynamic.Interface
}

func clientsOf(t *testing.T, l *lab.Lab, n *lab.Node) nodeClients {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", n.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = l.CP.RESTConfig().Dial // the API server is reachable inside the lab only
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return nodeClients{core, dyn}
}

// TestTrustBoundaries plays an attacker with root on one node: its own
// daemon stopped, it writes with its node's credentials whatever serves it.
// Each attack of the trust-boundaries review must fail to do harm to the
// victim, seen from an unmodified third node.
func TestTrustBoundaries(t *testing.T) {
	ctx := context.Background()
	l := newLab(t)
	nodes := startPodNodes(t, l, "victim", "attacker", "observer")
	victim, attacker, observer := nodes[0], nodes[1], nodes[2]
	pv, err := victim.AddPod(ctx, "pv")
	if err != nil {
		t.Fatal(err)
	}
	po, err := observer.AddPod(ctx, "po")
	if err != nil {
		t.Fatal(err)
	}
	pvIP := pv.IPs()[0]
	eventually(t, 20*time.Second, "observer's pod reaches the victim's", func() error { return po.Ping(ctx, pvIP, 1) })
	victimCIDR := netip.MustParsePrefix(pvIP + "/24").Masked() // startPodNodes: the victim's Node.spec.podCIDRs
	ac := clientsOf(t, l, attacker)

	t.Run("admission", func(t *testing.T) {
		denied := func(what string, err error, want string) {
			t.Helper()
			if err == nil {
				t.Errorf("%s: allowed", what)
			} else if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want an error containing %q", what, err, want)
			}
		}
		mns := ac.dyn.Resource(v1alpha1.MeshNodeResource)
		mn, err := l.Dynamic.Resource(v1alpha1.MeshNodeResource).Get(ctx, victim.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		unstructured.SetNestedSlice(mn.Object, []any{map[string]any{"address": "203.0.113.66:51820", "kind": "configured"}}, "spec", "endpoints")
		_, err = mns.Update(ctx, mn, metav1.UpdateOptions{})
		denied("update another node's MeshNode", err, "may write only its own MeshNode")

		ghost := mn.DeepCopy()
		ghost.SetName("ghost")
		ghost.SetResourceVersion("")
		ghost.SetOwnerReferences(nil)
		_, err = mns.Create(ctx, ghost, metav1.CreateOptions{})
		denied("create a MeshNode for a node that does not exist", err, "may write only its own MeshNode")

		claims, err := l.Dynamic.Resource(v1alpha1.IPClaimResource).List(ctx, metav1.ListOptions{LabelSelector: kube.NodeLabel + "=" + victim.Name})
		if err != nil || len(claims.Items) == 0 {
			t.Fatalf("the victim's IPClaims: %v (%d)", err, len(claims.Items))
		}
		err = ac.dyn.Resource(v1alpha1.IPClaimResource).Delete(ctx, claims.Items[0].GetName(), metav1.DeleteOptions{})
		denied("delete another node's IPClaim", err, "may create and delete only its own IPClaims")

		p := netip.MustParsePrefix("10.77.250.1/32")
		fake := &v1alpha1.IPClaim{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "IPClaim"},
			ObjectMeta: metav1.ObjectMeta{Name: kube.ClaimName(p)},
			Spec:       v1alpha1.IPClaimSpec{NodeName: victim.Name, Prefix: p.String(), Purpose: v1alpha1.PurposeMeshIP},
		}
		obj, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(fake)
		_, err = ac.dyn.Resource(v1alpha1.IPClaimResource).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
		denied("create an IPClaim in another node's name", err, "may create and delete only its own IPClaims")

		lease := &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "kube-controller-manager"}, Spec: coordv1.LeaseSpec{HolderIdentity: ptr.To(attacker.Name)}}
		_, err = ac.core.CoordinationV1().Leases("kube-system").Create(ctx, lease, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("take the kube-controller-manager Lease: %v, want forbidden", err)
		}
		lease.Name = victim.Name
		_, err = ac.core.CoordinationV1().Leases("kube-node-lease").Create(ctx, lease, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("write the victim's node Lease: %v, want forbidden", err)
		}
		vl, err := l.Core.CoordinationV1().Leases(lab.Namespace).Get(ctx, victim.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vl.Spec.HolderIdentity = ptr.To(attacker.Name)
		_, err = ac.core.CoordinationV1().Leases(lab.Namespace).Update(ctx, vl, metav1.UpdateOptions{})
		denied("renew the victim's Wirelace Lease", err, "may write only its own Lease")
	})

	// From here the attacker's daemon is replaced by the attacker: it stops
	// the daemon and writes its own MeshNode (which the policy allows).
	if err := attacker.Stop(); err != nil {
		t.Fatal(err)
	}
	rewrite := func(t *testing.T, change func(spec map[string]any)) {
		t.Helper()
		mn, err := ac.dyn.Resource(v1alpha1.MeshNodeResource).Get(ctx, attacker.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		spec, _, _ := unstructured.NestedMap(mn.Object, "spec")
		change(spec)
		unstructured.SetNestedMap(mn.Object, spec, "spec")
		if _, err := ac.dyn.Resource(v1alpha1.MeshNodeResource).Update(ctx, mn, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("the attacker writes its own MeshNode: %v", err)
		}
	}
	// seen waits until the observer's daemon has refused a claim.
	seen := func(t *testing.T, detail string) {
		t.Helper()
		eventually(t, 10*time.Second, "the observer refuses "+detail, func() error {
			b, _ := os.ReadFile(observer.LogPath)
			if !strings.Contains(string(b), detail) {
				return fmt.Errorf("no %q in its log", detail)
			}
			return nil
		})
	}
	half := func(i int) string {
		b := victimCIDR.Addr().As4()
		b[3] = byte(128 * i)
		return netip.PrefixFrom(netip.AddrFrom4(b), 25).String()
	}

	t.Run("claims peers refuse", func(t *testing.T) {
		rewrite(t, func(spec map[string]any) {
			spec["podCIDRs"] = append(spec["podCIDRs"].([]any), half(0), half(1))
			spec["meshIPs"] = append(spec["meshIPs"].([]any), "10.77.250.250")
			spec["advertisedCIDRs"] = []any{"198.18.0.1/32", "0.0.0.0/0", "10.66.0.0/16"}
		})
		seen(t, "node attacker claims pod CIDR "+half(1))
		routes := ourRoutes(t, observer)
		for _, bad := range []string{half(0), half(1), "10.77.250.250", "198.18.0.1", "default", "10.66.0.0"} {
			if strings.Contains(routes, bad+" ") || strings.HasPrefix(routes, bad) {
				t.Errorf("the observer routes %s into the mesh:\n%s", bad, routes)
			}
		}
		if out, err := observer.Exec(ctx, "ip", "route", "get", "198.18.0.1"); err != nil || viaMesh(out) {
			t.Errorf("the observer's way to the API server: %q %v", out, err)
		}
		if err := po.Ping(ctx, pvIP, 3); err != nil {
			t.Errorf("the victim's pod is cut off: %v", err)
		}
		if err := observer.WaitReady(ctx, 5*time.Second); err != nil {
			t.Errorf("the observer lost the API: %v", err)
		}
	})

	t.Run("routes wirelace does not own", func(t *testing.T) {
		// An operator's static route and the node's default route on the
		// observer; an operator grants the attacker both prefixes, and it
		// advertises them.
		if out, err := observer.Exec(ctx, "ip", "route", "add", "172.30.5.0/24", "via", "198.18.0.1", "proto", "static"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		before, _ := observer.Exec(ctx, "ip", "route", "show", "default")
		grant := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "RouteGrant",
			"metadata": map[string]any{"name": "attacker-gateway"},
			"spec":     map[string]any{"nodeName": attacker.Name, "cidrs": []any{"172.30.5.0/24", "172.30.6.0/24"}},
		}}
		if _, err := ac.dyn.Resource(v1alpha1.RouteGrantResource).Create(ctx, grant, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("a node grants itself routes: %v, want forbidden", err)
		}
		if _, err := l.Dynamic.Resource(v1alpha1.RouteGrantResource).Create(ctx, grant, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rewrite(t, func(spec map[string]any) {
			spec["advertisedCIDRs"] = []any{"172.30.5.0/24", "172.30.6.0/24", pvIP + "/32"}
		})
		eventually(t, 10*time.Second, "the observer routes the granted 172.30.6.0/24", func() error {
			if out, _ := observer.Exec(ctx, "ip", "route", "show", "172.30.6.0/24"); !viaMesh(out) {
				return fmt.Errorf("route: %q", out)
			}
			return nil
		})
		seen(t, "not routing prefixes through the mesh: the node already has routes to them")
		check := func(when string) {
			if out, _ := observer.Exec(ctx, "ip", "route", "show", "172.30.5.0/24"); !strings.Contains(out, "via 198.18.0.1") || viaMesh(out) {
				t.Errorf("%s: the operator's static route is now %q", when, out)
			}
			if out, _ := observer.Exec(ctx, "ip", "route", "show", "default"); out != before {
				t.Errorf("%s: default route %q, was %q", when, out, before)
			}
			if out, _ := observer.Exec(ctx, "ip", "route", "get", po.IPs()[0]); viaMesh(out) {
				t.Errorf("%s: the observer's own pod is routed into the mesh: %s", when, out)
			}
		}
		check("while advertised")
		// Withdrawn: the grant goes; Wirelace's route goes, the others stay.
		if err := l.Dynamic.Resource(v1alpha1.RouteGrantResource).Delete(ctx, "attacker-gateway", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the observer withdraws 172.30.6.0/24", func() error {
			if out, _ := observer.Exec(ctx, "ip", "route", "show", "172.30.6.0/24"); out != "" {
				return fmt.Errorf("route: %q", out)
			}
			return nil
		})
		check("after withdrawal")
		if err := po.Ping(ctx, pvIP, 2); err != nil {
			t.Errorf("pods: %v", err)
		}
	})

	t.Run("duplicate WireGuard key", func(t *testing.T) {
		vmn, err := l.Dynamic.Resource(v1alpha1.MeshNodeResource).Get(ctx, victim.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		key, _, _ := unstructured.NestedString(vmn.Object, "spec", "publicKey")
		rewrite(t, func(spec map[string]any) { spec["publicKey"] = key })
		seen(t, "uses the same WireGuard key as")
		// Whatever the observer does with the victim now, the attacker
		// gets none of the victim's traffic.
		if out, _ := observer.Exec(ctx, "ip", "route", "get", pvIP); viaMesh(out) {
			st := status(t, observer)
			for _, p := range st.Peers {
				if p.Node == attacker.Name {
					t.Errorf("the attacker is a peer with the victim's key: %+v", p)
				}
			}
		}
	})
}
