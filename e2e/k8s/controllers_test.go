package k8s

import (
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/wirelace/wirelace/e2e/labbuild"
)

// TestWithNodeAuth: with Controllers the API server authorizes nodes,
// restricts them, admits ServiceAccounts and accepts node certificates;
// every other flag stays.
func TestWithNodeAuth(t *testing.T) {
	f := pkiFiles{CACert: "/p/ca.crt", ServingCert: "/p/apiserver.crt", SAKey: "/p/sa.key", SAPub: "/p/sa.pub"}
	base := apiserverArgs(Options{AdvertiseIP: labAddr, Port: 6443}, f, "/t", "http://127.0.0.1:2379")
	got := apiserverArgs(Options{AdvertiseIP: labAddr, Port: 6443, Controllers: &Controllers{}}, f, "/t", "http://127.0.0.1:2379")
	for _, want := range []string{
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--client-ca-file=/p/client-ca.crt",
		"--kubelet-preferred-address-types=InternalIP",
		"--etcd-servers=http://127.0.0.1:2379",
	} {
		if !contains(got, want) {
			t.Errorf("args lack %s: %v", want, got)
		}
	}
	for _, gone := range []string{"--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount", "--client-ca-file=/p/ca.crt"} {
		if contains(got, gone) {
			t.Errorf("args still have %s", gone)
		}
	}
	if len(got) != len(base)+1 {
		t.Errorf("%d args with controllers, %d without: want exactly one more", len(got), len(base))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestControlPlaneWithControllers starts a control plane with Controllers:
// kube-controller-manager works (default ServiceAccount, a pod CIDR per
// Node), and a node certificate acts as its node and only as it.
func TestControlPlaneWithControllers(t *testing.T) {
	requireLab(t)
	ctx := testContext(t)
	bins := ensureBinaries(t, ctx)
	nodeBins, err := labbuild.EnsureNodeBinaries(ctx, cacheDir(t), &lineLogger{t: t})
	if err != nil {
		t.Fatalf("EnsureNodeBinaries: %v", err)
	}
	name := "wlk8s-" + randomHex(t, 4)
	createLabNetns(t, name)
	dir := t.TempDir()
	start := time.Now()
	cp, err := Start(ctx, Options{
		Binaries: bins, Dir: dir, NetNS: name, AdvertiseIP: labAddr,
		Controllers: &Controllers{Binaries: nodeBins},
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	t.Logf("control plane with controllers ready in %s", time.Since(start).Round(10*time.Millisecond))

	kubeconfig := filepath.Join(dir, "node.kubeconfig")
	if err := cp.WriteNodeKubeconfig(kubeconfig, "lab-node-1"); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = cp.RESTConfig().Dial
	nodeClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodeClient.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "lab-node-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("node creates its own Node: %v", err)
	}
	_, err = nodeClient.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "lab-node-2"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("node creates another's Node: %v, want Forbidden", err)
	}

	admin, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := admin.CoreV1().Nodes().Get(ctx, "lab-node-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(n.Spec.PodCIDRs) == 2 {
			t.Logf("pod CIDRs %v", n.Spec.PodCIDRs)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Node has no pod CIDR per family after 30s: %v", n.Spec.PodCIDRs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
