package labbuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testLog writes progress lines to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestLabModuleSharesWirelaceVersions: the resolved lab module selects, for
// every module the wirelace module requires, exactly the wirelace version.
// The lab module requires them all, so it can only select newer ones: those
// of a dependency of kubernetes, containerd or helm that is newer than
// ours. Every package of such a module, and of every module above it, is
// then compiled twice in a cold make test (minutes of it), so this fails
// with the go get that brings the wirelace module level.
//
// It resolves the lab module when it is not (the network, a minute or two),
// which make test has done in the background by the time this runs.
func TestLabModuleSharesWirelaceVersions(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(wd)) // go test runs in e2e/labbuild
	cache := os.Getenv("WIRELACE_CACHE")
	if cache == "" {
		cache = filepath.Join(root, ".cache")
	}
	shared, err := sharedModules(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(shared) == 0 {
		t.Skipf("the cache %s is not in a wirelace repository: the lab module shares nothing", cache)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	src, err := ensureLabModule(ctx, cache, shared, newProgressWriter(testLog{t}, "lab module: "))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	_, lab, err := moduleRequires(b)
	if err != nil {
		t.Fatal(err)
	}
	selected := map[string]string{}
	for _, m := range lab {
		selected[m.Path] = m.Version
	}
	var newer []string
	for _, m := range shared {
		v, ok := selected[m.Path]
		if !ok {
			t.Errorf("the lab module does not require %s, which the wirelace module does", m.Path)
			continue
		}
		if v != m.Version {
			newer = append(newer, fmt.Sprintf("%s@%s", m.Path, v))
		}
	}
	if len(newer) > 0 {
		t.Errorf("the lab module selects newer versions of %d modules than the wirelace module, so make test compiles their packages twice; bring it level with:\n  go get %s && go mod tidy",
			len(newer), strings.Join(newer, " "))
	}
}
