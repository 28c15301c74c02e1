package k8s

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wirelace/wirelace/e2e/labbuild"
)

// TestEnsureHelm builds (or reuses) the real helm and runs it.
func TestEnsureHelm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds helm from the module proxy; skipped in -short mode")
	}
	ctx := testContext(t)
	helm, err := labbuild.EnsureHelm(ctx, cacheDir(t), &lineLogger{t: t})
	if err != nil {
		t.Fatalf("EnsureHelm: %v", err)
	}
	out, err := exec.CommandContext(ctx, helm, "version", "--short").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), labbuild.HelmVersion) {
		t.Fatalf("helm version --short = %q, %v; want %s", out, err, labbuild.HelmVersion)
	}
	// The Kubernetes version helm assumes is the one its client-go speaks
	// (helm's Makefile sets it), not helm's 1.20 fallback.
	chart := t.TempDir()
	for name, text := range map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: kv\nversion: 0.0.1\n",
		"templates/kv.yaml": "# {{ .Capabilities.KubeVersion.Version }}\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(chart, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(chart, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err = exec.CommandContext(ctx, helm, "template", "x", chart).CombinedOutput()
	if err != nil || strings.Contains(string(out), "v1.20.") || !strings.Contains(string(out), "# v1.") {
		t.Fatalf("helm template of a chart printing .Capabilities.KubeVersion: %v\n%s", err, out)
	}
}
