package vocab

import (
	"os/exec"
	"strings"
	"testing"
)

// pure are the packages that hold logic, not wiring: they must build without
// the Kubernetes client, Prometheus or the CNI library, so that they stay
// small, fast to test and free of what those bring (the path machine once
// pulled in 270 packages for one string type).
var pure = []string{
	"github.com/wirelace/wirelace/api/vocab",
	"github.com/wirelace/wirelace/daemon/path",
	"github.com/wirelace/wirelace/daemon/probe",
	"github.com/wirelace/wirelace/daemon/mesh",
	"github.com/wirelace/wirelace/daemon/nat",
	"github.com/wirelace/wirelace/ipam",
}

// forbidden are import path prefixes no pure package may depend on, even
// indirectly.
var forbidden = []string{
	"k8s.io/",
	"sigs.k8s.io/",
	"github.com/prometheus/",
	"github.com/containernetworking/",
	"github.com/wirelace/wirelace/api/v1alpha1",
}

func TestPurePackagesDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, pkg := range pure {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 {
			t.Fatalf("go list -deps %s listed nothing", pkg)
		}
		for _, d := range deps {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
	}
}

// TestVocabIsStdlibOnly: everything vocab imports is in the standard library
// (no dot in the first path element), so importing it costs nothing.
func TestVocabIsStdlibOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "github.com/wirelace/wirelace/api/vocab").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); len(got) != 1 || got[0] != "github.com/wirelace/wirelace/api/vocab" {
		t.Fatalf("vocab's non-standard deps: %v, want only itself", got)
	}
}
