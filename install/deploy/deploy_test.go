package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/wirelace/wirelace/daemon/config"
)

const ns = "wirelace-system"

func load(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := LoadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	more, err := LoadDir("uninstall")
	if err != nil {
		t.Fatal(err)
	}
	return append(objs, more...)
}

func typed[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	if o == nil {
		t.Fatalf("missing %T", *new(T))
	}
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, &v, true); err != nil {
		t.Fatalf("%s: %v", Key(o), err)
	}
	return &v
}

// CheckDaemonConfig loads a wirelaced.yaml the way the daemon does: unknown
// keys and invalid values are errors.
func checkDaemonConfig(t *testing.T, text string) config.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "wirelaced.yaml")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c := config.Defaults()
	if err := c.LoadFile(f); err != nil {
		t.Fatal(err)
	}
	c.NodeName = "node-1" // --node-name=$(NODE_NAME)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConfigMapIsDaemonConfig: the ConfigMap's file is a valid wirelaced
// config, every key it sets is the daemon's default (the file documents
// them), and its paths are where the DaemonSet mounts things.
func TestConfigMapIsDaemonConfig(t *testing.T) {
	cm := typed[corev1.ConfigMap](t, Find(load(t), "ConfigMap", ns, "wirelace-config"))
	c := checkDaemonConfig(t, cm.Data["wirelaced.yaml"])
	d := config.Defaults()
	d.NodeName = c.NodeName
	// `relays: []` documents the key; the default is nil, the same.
	for _, l := range []*[]string{&c.Relays, &c.STUNServers} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	got, _ := yaml.Marshal(c)
	want, _ := yaml.Marshal(d)
	if string(got) != string(want) {
		t.Errorf("the ConfigMap's config differs from the daemon's defaults:\n%s\nwant\n%s", got, want)
	}
}

// TestImages: one image, wirelace/wirelace at the chart's appVersion, pulled
// only if missing, except the cleanup's pause container.
func TestImages(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "helm", "wirelace", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct{ AppVersion string }
	if err := yaml.Unmarshal(b, &chart); err != nil {
		t.Fatal(err)
	}
	want := "wirelace/wirelace:" + chart.AppVersion
	n := 0
	for _, o := range load(t) {
		spec, found, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
		if !found {
			continue
		}
		pod := typed[corev1.PodSpec](t, &unstructured.Unstructured{Object: spec})
		for _, c := range append(pod.InitContainers, pod.Containers...) {
			n++
			if c.Name == "done" {
				continue // the cleanup's pause container
			}
			if c.Image != want || c.ImagePullPolicy != corev1.PullIfNotPresent {
				t.Errorf("%s container %s: image %s (%s), want %s (IfNotPresent)", Key(o), c.Name, c.Image, c.ImagePullPolicy, want)
			}
		}
	}
	if n < 6 {
		t.Errorf("only %d containers found", n)
	}
}

// TestDaemonSetPrivileges pins the node DaemonSet's least privilege and
// its place on the node.
func TestDaemonSetPrivileges(t *testing.T) {
	ds := typed[appsv1.DaemonSet](t, Find(load(t), "DaemonSet", ns, "wirelace"))
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("hostNetwork %v hostPID %v hostIPC %v, want only hostNetwork", pod.HostNetwork, pod.HostPID, pod.HostIPC)
	}
	if pod.ServiceAccountName != "wirelace" || pod.PriorityClassName != "system-node-critical" {
		t.Errorf("serviceAccount %q priorityClass %q", pod.ServiceAccountName, pod.PriorityClassName)
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v, want one that tolerates everything", pod.Tolerations)
	}
	u := ds.Spec.UpdateStrategy
	if u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable.IntValue() != 1 {
		t.Errorf("update strategy %+v, want RollingUpdate, maxUnavailable 1", u)
	}
	caps := map[string][]corev1.Capability{"install-cni": nil, "wirelaced": {"NET_ADMIN"}}
	containers := append(slices.Clone(pod.InitContainers), pod.Containers...)
	if len(containers) != len(caps) {
		t.Fatalf("%d containers, want %d", len(containers), len(caps))
	}
	for _, c := range containers {
		sc := c.SecurityContext
		want, ok := caps[c.Name]
		if !ok || sc == nil || sc.Capabilities == nil {
			t.Fatalf("container %s: unexpected, or no security context", c.Name)
		}
		if sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: want privileged false, no privilege escalation, read-only root", c.Name)
		}
		if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, want) {
			t.Errorf("container %s: capabilities %+v, want drop ALL, add %v", c.Name, sc.Capabilities, want)
		}
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
		}) {
			t.Errorf("container %s: no NODE_NAME from spec.nodeName", c.Name)
		}
	}
	install := pod.InitContainers[0]
	if install.RestartPolicy == nil || *install.RestartPolicy != corev1.ContainerRestartPolicyAlways || install.Command[0] != "wirelace-install" {
		t.Errorf("install-cni: want wirelace-install as a native sidecar (restartPolicy Always)")
	}
	d := pod.Containers[0]
	if !slices.Contains(d.Args, "--node-name=$(NODE_NAME)") || !slices.Contains(d.Args, "--config=/etc/wirelace/wirelaced.yaml") {
		t.Errorf("wirelaced args %v", d.Args)
	}
	// The readiness probe must fail while the daemon is not ready: only the
	// table output exits 3 then (-o json exits 0).
	if p := d.ReadinessProbe; p == nil || p.Exec == nil || slices.Contains(p.Exec.Command, "json") || !slices.Contains(p.Exec.Command, "status") {
		t.Errorf("readiness probe %+v: want `wirelacectl status` without -o json", p)
	}
	hostPaths := map[string]corev1.HostPathType{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.HostPath.Path] = *v.HostPath.Type
		}
	}
	wantPaths := map[string]corev1.HostPathType{
		"/var/lib/wirelace": corev1.HostPathDirectoryOrCreate, "/run/wirelace": corev1.HostPathDirectoryOrCreate,
		"/var/run/wireguard": corev1.HostPathDirectoryOrCreate, "/dev/net/tun": corev1.HostPathCharDev,
		"/opt/cni/bin": corev1.HostPathDirectoryOrCreate, "/etc/cni/net.d": corev1.HostPathDirectoryOrCreate,
	}
	if !mapsEqual(hostPaths, wantPaths) {
		t.Errorf("host paths %v, want %v", hostPaths, wantPaths)
	}
}

func mapsEqual[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestRelayAddressable: relays do not forward to each other, so each
// replica needs a Service of its own; and the relay runs as nonroot.
func TestRelayAddressable(t *testing.T) {
	objs := load(t)
	sts := typed[appsv1.StatefulSet](t, Find(objs, "StatefulSet", ns, "wirelace-relay"))
	replicas := int(*sts.Spec.Replicas)
	if replicas < 2 || sts.Spec.Template.Spec.Affinity == nil || sts.Spec.Template.Spec.Affinity.PodAntiAffinity == nil {
		t.Errorf("relay: %d replicas, anti-affinity %v; want 2 or more, spread", replicas, sts.Spec.Template.Spec.Affinity)
	}
	for i := range replicas {
		name := sts.Name + "-" + string(rune('0'+i))
		svc := typed[corev1.Service](t, Find(objs, "Service", ns, name))
		if svc.Spec.Selector["statefulset.kubernetes.io/pod-name"] != name {
			t.Errorf("Service %s selects %v, want only pod %s", name, svc.Spec.Selector, name)
		}
		var ports []string
		for _, p := range svc.Spec.Ports {
			ports = append(ports, string(p.Protocol)+"/"+p.TargetPort.String()+"/"+strings.TrimSpace(p.Name))
		}
		if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[0].Port != 8443 || svc.Spec.Ports[1].Protocol != corev1.ProtocolUDP || svc.Spec.Ports[1].Port != 3478 {
			t.Errorf("Service %s ports %v, want TCP 8443 and UDP 3478", name, ports)
		}
	}
	sc := sts.Spec.Template.Spec.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("relay pod security context %+v, want nonroot", sc)
	}
}
