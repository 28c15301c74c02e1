// Package install holds the manifests users apply; its test keeps the
// generated ones honest.
package install

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// controllerGen returns the command that runs the Makefile's controller-gen
// (a tool of our module, at go.mod's version).
func controllerGen(t *testing.T) (string, []string) {
	t.Helper()
	if gen := os.Getenv("CONTROLLER_GEN"); gen != "" {
		return gen, nil
	}
	return "go", []string{"tool", "controller-gen"}
}

// TestDeepCopyIsGenerated fails when api/'s deepcopy code differs from what
// controller-gen makes of the types (run `make generate`).
func TestDeepCopyIsGenerated(t *testing.T) {
	gen, args := controllerGen(t)
	cmd := exec.Command(gen, append(args, "object", "paths=./api/...", "output:object:stdout")...)
	cmd.Dir = ".."
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("controller-gen object: %v", err)
	}
	have, err := os.ReadFile("../api/v1alpha1/zz_generated.deepcopy.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || !bytes.Equal(want, have) {
		t.Error("api/v1alpha1/zz_generated.deepcopy.go is stale: run make generate")
	}
}

// TestCRDsAreGenerated fails when install/crds differs from what
// controller-gen makes of the Go types in api/: the CRDs must never be
// edited by hand or left stale after a type change (run `make generate`).
func TestCRDsAreGenerated(t *testing.T) {
	gen, args := controllerGen(t)
	out := t.TempDir()
	args = append(args, "crd", "paths=./api/...", "output:crd:artifacts:config="+out)
	cmd := exec.Command(gen, args...)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, b)
	}
	want, _ := filepath.Glob(filepath.Join(out, "*.yaml"))
	have, _ := filepath.Glob("crds/*.yaml")
	if len(want) == 0 || len(want) != len(have) {
		t.Fatalf("generated %d CRDs, committed %d: run make generate", len(want), len(have))
	}
	for _, w := range want {
		gb, _ := os.ReadFile(w)
		hb, err := os.ReadFile(filepath.Join("crds", filepath.Base(w)))
		if err != nil {
			t.Fatalf("%s is not committed: run make generate", filepath.Base(w))
		}
		if !bytes.Equal(gb, hb) {
			t.Errorf("install/crds/%s is stale: run make generate", filepath.Base(w))
		}
	}
}
