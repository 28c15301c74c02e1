// Package roottest is how tests that need root (network namespaces, TUN
// devices, nftables) say so. Run as another user they fail rather than
// skip: a test suite that passes by quietly skipping its integration tests
// proves nothing. WIRELACE_SKIP_ROOT_TESTS=1 skips them on purpose.
package roottest

import (
	"os"
	"testing"
)

// Require fails (or, with WIRELACE_SKIP_ROOT_TESTS=1, skips) t unless the
// test runs as root.
func Require(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("WIRELACE_SKIP_ROOT_TESTS") != "" {
		t.Skipf("SKIPPED, needs root (%s): WIRELACE_SKIP_ROOT_TESTS is set", why)
	}
	t.Fatalf("needs root (%s): run `make test` as root, or set WIRELACE_SKIP_ROOT_TESTS=1 to skip it knowingly", why)
}
