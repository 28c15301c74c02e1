// Package helm holds the Helm chart (wirelace/) and its checks that need
// no helm binary; e2e/install_test.go renders it and compares the result
// with install/deploy, and dry-runs it against a real API server.
package helm

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestCRDsVerbatim: Helm installs the CRDs from the chart's crds/, which
// must be install/crds byte for byte (make generate writes only the
// latter: copy them over after it).
func TestCRDsVerbatim(t *testing.T) {
	names := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	src, chart := filepath.Join("..", "crds"), filepath.Join("wirelace", "crds")
	want, got := names(src), names(chart)
	if !slices.Equal(got, want) {
		t.Fatalf("chart crds/ holds %v, install/crds %v: cp install/crds/*.yaml install/helm/wirelace/crds/", got, want)
	}
	for _, n := range want {
		a, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(chart, n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from install/crds/%s: cp install/crds/*.yaml install/helm/wirelace/crds/", filepath.Join(chart, n), n)
		}
	}
}
