// Package netnstest gives tests throwaway network namespaces, so that no
// test changes the network of the host it runs on.
package netnstest

import (
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"

	"github.com/wirelace/wirelace/internal/roottest"
)

// New is a fresh network namespace, closed and removed when the test ends.
// Making one needs root: without it t fails (see internal/roottest).
func New(t testing.TB) ns.NetNS {
	t.Helper()
	roottest.Require(t, "network namespaces")
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() {
		n.Close()
		_ = testutils.UnmountNS(n)
	})
	return n
}
