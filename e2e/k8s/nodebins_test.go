package k8s

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestGroupStamp: a group of binaries is reused only with its own stamp and
// every binary executable, so a killed build, another group's or one of
// another recipe is redone.
func TestGroupStamp(t *testing.T) {
	dir := t.TempDir()
	stamp := filepath.Join(dir, "stamp")
	bins := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	node := groupStampText("node")
	if groupUpToDate(stamp, node, bins) {
		t.Fatal("up to date with nothing there")
	}
	for _, b := range bins {
		if err := os.WriteFile(b, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, other := range []string{groupStampText("helm"), strings.Replace(node, ContainerdVersion, "v2.0.0", 1)} {
		if err := os.WriteFile(stamp, []byte(other), 0o644); err != nil {
			t.Fatal(err)
		}
		if groupUpToDate(stamp, node, bins) {
			t.Fatalf("up to date with the stamp %q", other)
		}
	}
	if err := os.WriteFile(stamp, []byte(node), 0o644); err != nil {
		t.Fatal(err)
	}
	if !groupUpToDate(stamp, node, bins) {
		t.Fatal("not up to date with a matching stamp")
	}
	if err := os.Chmod(bins[0], 0o644); err != nil {
		t.Fatal(err)
	}
	if groupUpToDate(stamp, node, bins) {
		t.Fatal("up to date with a binary that is not executable")
	}
	if err := os.Remove(bins[1]); err != nil {
		t.Fatal(err)
	}
	if groupUpToDate(stamp, node, bins) {
		t.Fatal("up to date with a binary missing")
	}
	for _, want := range []string{KubernetesVersion, EtcdVersion, ContainerdVersion, CNIPluginsVersion, HelmVersion, labBuildTags} {
		if !strings.Contains(node, want) {
			t.Errorf("stamp %q does not record %s", node, want)
		}
	}
}

// TestTargetNames: go build names etcd's binary after the element before
// its major version suffix; the lab installs it as etcd.
func TestTargetNames(t *testing.T) {
	for _, tc := range []struct {
		t           buildTarget
		built, name string
	}{
		{buildTarget{pkg: etcdModule, out: "etcd"}, "server", "etcd"},
		{buildTarget{pkg: kubeletPkg}, "kubelet", "kubelet"},
		{buildTarget{pkg: containerdModule + "/cmd/ctr"}, "ctr", "ctr"},
		{buildTarget{pkg: helmPkg}, "helm", "helm"},
	} {
		if got := tc.t.built(); got != tc.built {
			t.Errorf("%s: go build writes %q, want %q", tc.t.pkg, got, tc.built)
		}
		if got := tc.t.name(); got != tc.name {
			t.Errorf("%s: installed as %q, want %q", tc.t.pkg, got, tc.name)
		}
	}
}

// TestLabLdflags: one set of version stamps serves every binary, each set
// the way its upstream build sets it.
func TestLabLdflags(t *testing.T) {
	got := labLdflags()
	for _, want := range []string{
		"-s -w ",
		"-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion + " ",
		"-X k8s.io/component-base/version.gitMinor=" + strings.Split(KubernetesVersion, ".")[1] + " ",
		"-X github.com/containerd/containerd/v2/version.Version=" + ContainerdVersion + " ",
		"-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=" + CNIPluginsVersion + " ",
		"-X helm.sh/helm/v3/internal/version.version=" + HelmVersion + " ",
		"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=" + strings.Split(KubernetesVersion, ".")[1] + " ",
	} {
		if !strings.Contains(got+" ", want) {
			t.Errorf("ldflags %q lack %q", got, want)
		}
	}
}

// TestCheckVersion: the version check looks at the output, whatever the
// exit status (CNI plugins print their version and exit 1).
func TestCheckVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"tool $1 v9.9.9\"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := checkVersion(ctx, bin, buildTarget{pkg: "x/tool", versionArgs: []string{"-v"}, want: "v9.9.9"}); err != nil {
		t.Errorf("matching version: %v", err)
	}
	if err := checkVersion(ctx, bin, buildTarget{pkg: "x/tool", want: "v1.0.0"}); err == nil {
		t.Error("another version passed the check")
	}
}

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
	nodeBins, err := EnsureNodeBinaries(ctx, cacheDir(t), &lineLogger{t: t})
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
