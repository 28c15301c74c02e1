package k8s

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/wirelace/wirelace/e2e/labbuild"
)

// labAddr is the API server's address inside the test namespace, from the
// benchmarking range 198.18.0.0/15 so it can never clash with a real network.
var labAddr = netip.MustParseAddr("198.18.0.1")

func TestControlPlaneInNetns(t *testing.T) {
	requireLab(t)
	ctx := testContext(t)
	bins := ensureBinaries(t, ctx)

	name := "wlk8s-" + randomHex(t, 4)
	createLabNetns(t, name)
	dir := t.TempDir() // removed after Stop: cleanups run last-in first-out

	nodeToken := Token{Token: randomHex(t, 16), User: "system:node:lab-node-1", Groups: []string{"system:nodes", "wirelace:lab"}}
	start := time.Now()
	cp, err := Start(ctx, Options{
		Binaries:    bins,
		Dir:         dir,
		NetNS:       name,
		AdvertiseIP: labAddr,
		Tokens:      []Token{nodeToken},
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("Stop in cleanup: %v", err)
		}
	})
	t.Logf("control plane ready at %s in %s", cp.URL(), time.Since(start).Round(10*time.Millisecond))
	if want := "https://198.18.0.1:6443"; cp.URL() != want {
		t.Errorf("URL = %q, want %q", cp.URL(), want)
	}

	// The test process stays in the host namespace; only RESTConfig's dialer
	// enters the lab namespace.
	cs, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	ver, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if ver.GitVersion != labbuild.KubernetesVersion || ver.Major != "1" || ver.Minor != "37" {
		t.Errorf("server version = %+v, want %s", ver, labbuild.KubernetesVersion)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "wirelace-e2e", Labels: map[string]string{"wirelace.io/lab": "true"}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	gotNS, err := cs.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get namespace: %v", err)
	}
	if gotNS.Labels["wirelace.io/lab"] != "true" {
		t.Errorf("namespace labels = %v", gotNS.Labels)
	}

	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "lab-node-1", Labels: map[string]string{"wirelace.io/lab": "true"}},
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}},
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node: %v", err)
	}
	gotNode, err := cs.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node: %v", err)
	}
	if gotNode.Spec.PodCIDR != "10.244.1.0/24" || gotNode.Labels["wirelace.io/lab"] != "true" {
		t.Errorf("node read back = spec %+v labels %v", gotNode.Spec, gotNode.Labels)
	}

	checkKubeconfig(t, ctx, cp, filepath.Join(dir, "node.kubeconfig"), nodeToken)

	pids := []int{cp.apiserver.Pid, cp.etcd.Pid}
	if err := cp.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("pid %d still exists after Stop", pid)
		}
	}
	if procs := processesMentioning(t, dir); len(procs) > 0 {
		t.Errorf("processes still running after Stop: %v", procs)
	}

	deleteNetns(t, name)
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Errorf("ip netns list: %v: %s", err, out)
	} else if slices.Contains(strings.Fields(string(out)), name) {
		t.Errorf("netns %s still listed: %s", name, out)
	}
	if _, err := os.Stat(netnsPath(name)); !os.IsNotExist(err) {
		t.Errorf("%s still exists (err=%v)", netnsPath(name), err)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && bytes.Contains(mi, []byte(netnsPath(name))) {
		t.Errorf("a mount of %s remains", netnsPath(name))
	}
}

// TestStartFailureCleansUp starts the API server on an address the
// namespace does not have: Start must fail with the reason from the log and
// leave no process behind.
func TestStartFailureCleansUp(t *testing.T) {
	requireLab(t)
	ctx := testContext(t)
	bins := ensureBinaries(t, ctx)
	name := "wlk8s-" + randomHex(t, 4)
	createLabNetns(t, name)
	dir := t.TempDir()

	cp, err := Start(ctx, Options{Binaries: bins, Dir: dir, NetNS: name, AdvertiseIP: netip.MustParseAddr("198.18.0.99")})
	if err == nil {
		_ = cp.Stop()
		t.Fatal("Start succeeded with an address that is not in the namespace")
	}
	if !strings.Contains(err.Error(), "apiserver.log") || !strings.Contains(err.Error(), "cannot assign requested address") {
		t.Errorf("error does not carry the apiserver log tail: %v", err)
	}
	t.Logf("Start failed as expected: %v", err)
	if procs := processesMentioning(t, dir); len(procs) > 0 {
		t.Errorf("processes still running after failed Start: %v", procs)
	}
}

// checkKubeconfig writes a kubeconfig for the node token, loads it back with
// clientcmd and uses it to ask the API server who the token belongs to.
func checkKubeconfig(t *testing.T, ctx context.Context, cp *ControlPlane, path string, tok Token) {
	t.Helper()
	if err := cp.WriteKubeconfig(path, tok.Token); err != nil {
		t.Fatalf("WriteKubeconfig: %v", err)
	}
	if fi, err := os.Stat(path); err != nil {
		t.Fatalf("stat kubeconfig: %v", err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode = %v, want 0600", fi.Mode().Perm())
	}
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatalf("load kubeconfig: %v", err)
	}
	cctx := kc.Contexts[kc.CurrentContext]
	if cctx == nil {
		t.Fatalf("kubeconfig has no current context %q", kc.CurrentContext)
	}
	cluster, user := kc.Clusters[cctx.Cluster], kc.AuthInfos[cctx.AuthInfo]
	if cluster == nil || user == nil {
		t.Fatalf("kubeconfig context %q refers to missing cluster/user", kc.CurrentContext)
	}
	if cluster.Server != cp.URL() || !bytes.Equal(cluster.CertificateAuthorityData, cp.CACert()) || user.Token != tok.Token {
		t.Errorf("kubeconfig server=%q token-ok=%v ca-ok=%v", cluster.Server, user.Token == tok.Token,
			bytes.Equal(cluster.CertificateAuthorityData, cp.CACert()))
	}

	// A daemon inside the namespace would use the kubeconfig as is; from
	// here the same config needs the namespace dialer.
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("rest config from kubeconfig: %v", err)
	}
	cfg.Dial = cp.RESTConfig().Dial
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset from kubeconfig: %v", err)
	}
	ssr, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview with node token: %v", err)
	}
	ui := ssr.Status.UserInfo
	if ui.Username != tok.User {
		t.Errorf("token user = %q, want %q", ui.Username, tok.User)
	}
	for _, g := range append(tok.Groups, "system:authenticated") {
		if !slices.Contains(ui.Groups, g) {
			t.Errorf("token groups = %v, missing %q", ui.Groups, g)
		}
	}
}

func TestControlPlaneHostNetns(t *testing.T) {
	requireLab(t)
	ctx := testContext(t)
	bins := ensureBinaries(t, ctx)

	// A free port on the host, so the test never collides with a real
	// cluster on 6443.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	dir := t.TempDir()
	cp, err := Start(ctx, Options{Binaries: bins, Dir: dir, Port: port})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	if want := fmt.Sprintf("https://127.0.0.1:%d", port); cp.URL() != want {
		t.Errorf("URL = %q, want %q", cp.URL(), want)
	}
	cs, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("get default namespace: %v", err)
	}
	if err := cp.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if procs := processesMentioning(t, dir); len(procs) > 0 {
		t.Errorf("processes still running after Stop: %v", procs)
	}
}

// requireLab skips tests that need root and the built binaries.
func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs kube-apiserver; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
}

// testContext ends a little before the test binary's deadline, so a hung
// step fails with a useful error instead of a panic dump.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-20*time.Second))
	}
	t.Cleanup(cancel)
	return ctx
}

// binRes shares one successful EnsureBinaries call between the tests of a run.
var (
	binMu  sync.Mutex
	binRes *labbuild.Binaries
)

func ensureBinaries(t *testing.T, ctx context.Context) labbuild.Binaries {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if binRes != nil {
		return *binRes
	}
	start := time.Now()
	bins, err := labbuild.EnsureBinaries(ctx, cacheDir(t), &lineLogger{t: t})
	if err != nil {
		t.Fatalf("EnsureBinaries: %v", err)
	}
	t.Logf("EnsureBinaries took %s", time.Since(start).Round(100*time.Millisecond))
	binRes = &bins
	return bins
}

// cacheDir is $WIRELACE_CACHE or <repo>/.cache (ignored by git).
func cacheDir(t *testing.T) string {
	if d := os.Getenv("WIRELACE_CACHE"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			bytes.Contains(b, []byte("module github.com/wirelace/wirelace\n")) {
			return filepath.Join(d, ".cache")
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no wirelace go.mod above %s; set WIRELACE_CACHE", wd)
		}
	}
}

// createLabNetns creates a namespace with lo up and a veth pair whose both
// ends live inside it, one carrying labAddr. (This kernel has no dummy
// driver; a veth pair kept inside the namespace is the portable stand-in and
// never touches the host.) Cleanup deletes the namespace even on failure.
func createLabNetns(t *testing.T, name string) {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { deleteNetns(t, name) })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	run(t, "ip", "-n", name, "link", "add", "wl0", "type", "veth", "peer", "name", "wl1")
	run(t, "ip", "-n", name, "addr", "add", labAddr.String()+"/24", "dev", "wl0")
	run(t, "ip", "-n", name, "link", "set", "wl1", "up")
	run(t, "ip", "-n", name, "link", "set", "wl0", "up")
}

// deleteNetns removes the namespace if it still exists; the veth pair goes
// with it.
func deleteNetns(t *testing.T, name string) {
	if _, err := os.Stat(netnsPath(name)); os.IsNotExist(err) {
		return
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Errorf("ip netns del %s: %v: %s", name, err, out)
	}
}

func run(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// processesMentioning lists processes whose command line contains s: the
// control plane's processes all name their state directory.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	self := fmt.Sprint(os.Getpid())
	for _, e := range entries {
		if e.Name() == self || strings.Trim(e.Name(), "0123456789") != "" {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue // exited meanwhile
		}
		if bytes.Contains(cmdline, []byte(s)) {
			found = append(found, e.Name()+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return found
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// lineLogger turns build progress into test log lines, which `go test -v`
// streams while the build runs.
type lineLogger struct {
	t   *testing.T
	buf []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}
