package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/wirelace/wirelace/daemon/config"
	"github.com/wirelace/wirelace/e2e/labbuild"
	"github.com/wirelace/wirelace/install/deploy"
)

// chartValues are the value sets the install tests render the chart with:
// the defaults, the Cilium example, and every optional branch at once.
var chartValues = []struct {
	name string
	args []string
}{
	{"default", nil},
	{"cilium", []string{"-f", "install/helm/wirelace/examples/values-cilium.yaml"}},
	{"options", []string{"--set", "k8sServiceHost=10.96.0.1,k8sServicePort=6443,daemon.metrics.enabled=true," +
		"daemon.relayCA=-----BEGIN CERTIFICATE-----,relay.tlsSecretName=relay-tls,relay.replicas=3," +
		"relay.service.type=NodePort,daemon.relays={198.51.100.1:8443},imagePullSecrets[0].name=regcred," +
		"cni.confName=05-wirelace.conflist"}},
}

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBinary builds (once per cache, minutes when cold) or reuses helm.
func helmBinary(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		cache := os.Getenv("WIRELACE_CACHE")
		if cache == "" {
			cache = filepath.Join(repoRootDir(), ".cache")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		helmPath, helmErr = labbuild.EnsureHelm(ctx, cache, progress{})
	})
	if helmErr != nil {
		t.Fatalf("helm: %v", helmErr)
	}
	return helmPath
}

// renderChart runs `helm template` as an install into wirelace-system on
// the lab's Kubernetes version would.
func renderChart(t *testing.T, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	args := append([]string{"template", "wirelace", "install/helm/wirelace", "--namespace", "wirelace-system",
		"--kube-version", labbuild.KubernetesVersion}, extra...)
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Dir = repoRootDir()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderrOf(err))
	}
	objs, err := deploy.Parse(out)
	if err != nil {
		t.Fatalf("helm %s output: %v", strings.Join(args, " "), err)
	}
	return objs
}

func stderrOf(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}

func loadInstallDir(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := deploy.LoadDir(filepath.Join(repoRootDir(), dir))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestInstallChartMatchesDeploy renders the chart with its default values
// and holds it to the plain manifests: the same objects (install/deploy
// without the Namespace, which `helm install --create-namespace` makes;
// install/rbac and install/admission, which the chart carries; the
// uninstall DaemonSet as a post-delete hook), equal in everything but
// labels and annotations (the chart's labels are a superset, its only
// annotations the config checksum and the hook's). It also lints the chart
// and checks that every rendering's wirelaced config loads in the daemon.
func TestInstallChartMatchesDeploy(t *testing.T) {
	helm := helmBinary(t)
	for _, v := range chartValues {
		cmd := exec.Command(helm, append([]string{"lint", "--strict", "install/helm/wirelace", "--namespace", "wirelace-system"}, v.args...)...)
		cmd.Dir = repoRootDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("helm lint (%s values): %v\n%s", v.name, err, out)
		}
		for _, o := range renderChart(t, v.args...) {
			if o.GetKind() == "ConfigMap" {
				checkWirelacedConfig(t, v.name, o)
			}
		}
	}

	var want []*unstructured.Unstructured
	for _, dir := range []string{"install/deploy", "install/deploy/uninstall", "install/rbac", "install/admission"} {
		for _, o := range loadInstallDir(t, dir) {
			if o.GetKind() != "Namespace" {
				want = append(want, o)
			}
		}
	}
	got := renderChart(t)
	keys := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, o := range objs {
			out = append(out, deploy.Key(o))
		}
		slices.Sort(out)
		return out
	}
	if g, w := keys(got), keys(want); !slices.Equal(g, w) {
		t.Fatalf("the chart renders\n  %v\ninstall/ has\n  %v", g, w)
	}
	for _, w := range want {
		g := deploy.Find(got, w.GetKind(), w.GetNamespace(), w.GetName())
		for k, v := range w.GetLabels() {
			if g.GetLabels()[k] != v {
				t.Errorf("%s: the chart's labels %v lack %s=%s", deploy.Key(w), g.GetLabels(), k, v)
			}
		}
		for k := range g.GetAnnotations() {
			if !strings.HasPrefix(k, "helm.sh/hook") {
				t.Errorf("%s: unexpected annotation %s", deploy.Key(w), k)
			}
		}
		gs, ws := substance(t, g), substance(t, w)
		if !reflect.DeepEqual(gs, ws) {
			gb, _ := yaml.Marshal(gs)
			wb, _ := yaml.Marshal(ws)
			t.Errorf("%s differs:\nchart:\n%s\ninstall/:\n%s", deploy.Key(w), gb, wb)
		}
	}

	// The Cilium example: chained into Cilium's conflist, node-IP routes.
	cilium := renderChart(t, chartValues[1].args...)
	ds := deploy.Find(cilium, "DaemonSet", "wirelace-system", "wirelace")
	initc, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "initContainers")
	args, _, _ := unstructured.NestedStringSlice(initc[0].(map[string]any), "args")
	if !slices.Equal(args, []string{"--mode=chained", "--primary-conf=05-cilium.conflist"}) {
		t.Errorf("cilium values: install-cni args %v", args)
	}
	c := checkWirelacedConfig(t, "cilium", deploy.Find(cilium, "ConfigMap", "wirelace-system", "wirelace-config"))
	if !c.NodeIPRoutes || c.MTU != 1420 {
		t.Errorf("cilium values: nodeIPRoutes %v mtu %d, want true 1420", c.NodeIPRoutes, c.MTU)
	}
}

// substance is an object without what may differ between the chart and
// install/: labels, annotations, and the config file's comments and
// spelling (its keys and values are compared parsed).
func substance(t *testing.T, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	c := o.DeepCopy()
	unstructured.RemoveNestedField(c.Object, "metadata", "labels")
	unstructured.RemoveNestedField(c.Object, "metadata", "annotations")
	if ann, _, _ := unstructured.NestedStringMap(c.Object, "spec", "template", "metadata", "annotations"); ann != nil {
		for k := range ann {
			if !strings.HasPrefix(k, "checksum/") {
				t.Errorf("%s: unexpected pod annotation %s", deploy.Key(o), k)
			}
		}
		unstructured.RemoveNestedField(c.Object, "spec", "template", "metadata", "annotations")
	}
	if c.GetKind() == "ConfigMap" {
		data, _, _ := unstructured.NestedStringMap(c.Object, "data")
		parsed := map[string]any{}
		for k, v := range data {
			var m any
			if err := yaml.Unmarshal([]byte(v), &m); err != nil {
				t.Fatalf("%s data %s: %v", deploy.Key(o), k, err)
			}
			parsed[k] = m
		}
		c.Object["data"] = parsed
	}
	return c.Object
}

// checkWirelacedConfig loads a ConfigMap's wirelaced.yaml as the daemon
// would (strict keys, validation).
func checkWirelacedConfig(t *testing.T, what string, cm *unstructured.Unstructured) config.Config {
	t.Helper()
	text, _, _ := unstructured.NestedString(cm.Object, "data", "wirelaced.yaml")
	f := filepath.Join(t.TempDir(), "wirelaced.yaml")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c := config.Defaults()
	err := c.LoadFile(f)
	if err == nil {
		c.NodeName = "node-1"
		err = c.Validate()
	}
	if err != nil {
		t.Errorf("%s values: wirelaced config: %v\n%s", what, err, text)
	}
	return c
}

// TestInstallManifestsDryRun sends every object of install/deploy (with
// the uninstall DaemonSet) and of the chart's renderings (CRDs included)
// to a real kube-apiserver as a server-side dry run: schema, defaults and
// validation of each object, admission included. The lab has installed
// the CRDs, the namespace, the ServiceAccounts, the roles and their
// bindings and the admission policy already: those are dry-run as updates
// of the existing objects instead.
func TestInstallManifestsDryRun(t *testing.T) {
	helmBinary(t) // built before the lab's clock starts
	l := newLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(l.Core.Discovery()))

	// A warning (a deprecated API, a Pod Security level the namespace
	// would not allow) fails the test too.
	cfg := l.CP.RESTConfig()
	warnings := &warningRecorder{}
	cfg.WarningHandler = warnings
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	type set struct {
		name string
		objs []*unstructured.Unstructured
	}
	sets := []set{{"install_deploy", append(loadInstallDir(t, "install/deploy"), loadInstallDir(t, "install/deploy/uninstall")...)}}
	for _, v := range chartValues {
		sets = append(sets, set{"helm_" + v.name, renderChart(t, append([]string{"--include-crds"}, v.args...)...)})
	}
	for _, s := range sets {
		t.Run(s.name, func(t *testing.T) {
			updated := 0
			for _, o := range s.objs {
				verb, err := dryRun(ctx, dyn, mapper, o)
				if err != nil {
					t.Errorf("%s: %v", deploy.Key(o), err)
				}
				if w := warnings.take(); len(w) > 0 {
					t.Errorf("%s: API server warnings: %v", deploy.Key(o), w)
				}
				if verb == "update" {
					updated++
				}
			}
			t.Logf("%d objects accepted (%d of them existing, as updates)", len(s.objs), updated)
		})
	}
}

// warningRecorder keeps the API server's warnings for the test to report.
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

// dryRun creates o with dryRun=All, or, when it exists, updates the
// existing object to o with dryRun=All. It returns which it did.
func dryRun(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, o *unstructured.Unstructured) (string, error) {
	gvk := o.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return "", fmt.Errorf("no resource for %s: %w", gvk, err)
	}
	var res dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if o.GetNamespace() == "" {
			return "", fmt.Errorf("namespaced %s without a namespace", gvk.Kind)
		}
		res = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	dry := []string{metav1.DryRunAll}
	_, err = res.Create(ctx, o, metav1.CreateOptions{DryRun: dry, FieldValidation: "Strict"})
	if !apierrors.IsAlreadyExists(err) {
		return "create", err
	}
	cur, err := res.Get(ctx, o.GetName(), metav1.GetOptions{})
	if err != nil {
		return "update", err
	}
	u := o.DeepCopy()
	u.SetResourceVersion(cur.GetResourceVersion())
	_, err = res.Update(ctx, u, metav1.UpdateOptions{DryRun: dry, FieldValidation: "Strict"})
	return "update", err
}
