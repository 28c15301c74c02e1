package labbuild

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"
)

// TestGroupStamp: a group of binaries is reused only with its own stamp and
// every binary executable, so a killed build, another group's or one of
// another recipe is redone.
func TestGroupStamp(t *testing.T) {
	dir := t.TempDir()
	stamp := filepath.Join(dir, "stamp")
	bins := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	shared := []module.Version{{Path: "golang.org/x/sys", Version: "v0.49.0"}}
	node := groupStampText("node", shared)
	if groupUpToDate(stamp, node, bins) {
		t.Fatal("up to date with nothing there")
	}
	for _, b := range bins {
		if err := os.WriteFile(b, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, other := range []string{
		groupStampText("helm", shared),
		strings.Replace(node, ContainerdVersion, "v2.0.0", 1),
		groupStampText("node", nil), // the wirelace module's versions changed
		groupStampText("node", []module.Version{{Path: "golang.org/x/sys", Version: "v0.50.0"}}),
	} {
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
