package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wirelace/wirelace/e2e/lab"
	"github.com/wirelace/wirelace/netconf"
)

// repoRoot is the repository root, found from this file's location.
func repoRoot(t *testing.T) string { return repoRootDir() }

func repoRootDir() string {
	// go test runs a package's tests in its directory, e2e/; the
	// binaries are built -trimpath, so runtime.Caller has no real paths.
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Dir(wd)
}

// newLab starts a lab for one test and removes it when the test ends. The
// logs stay under .lab/<prefix> when the test failed.
func newLab(t *testing.T) *lab.Lab { return newLabWith(t, lab.Options{}) }

// newLabWith is newLab with options: Root and Log are filled in.
func newLabWith(t *testing.T, opts lab.Options) *lab.Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the lab needs root (network namespaces); run `make test` as root")
	}
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "bin", "wirelaced")); err != nil {
		t.Fatal("bin/wirelaced missing: run the e2e tests through `make test` (it builds first)")
	}
	// A lab with kubelets starts more and, on a cold cache, builds more.
	setup := 10 * time.Minute
	if opts.Helm {
		setup = 20 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), setup)
	defer cancel()
	opts.Root, opts.Log = root, progress{}
	l, err := lab.New(ctx, opts)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
		if t.Failed() {
			t.Logf("lab logs kept in %s", l.Dir)
			return
		}
		l.RemoveDir()
	})
	return l
}

// startNodes adds and starts nodes and waits until each is ready.
func startNodes(t *testing.T, l *lab.Lab, names ...string) []*lab.Node {
	t.Helper()
	var nodes []*lab.Node
	for _, name := range names {
		n, err := l.AddNode(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.WaitReady(context.Background(), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// eventually retries f until it succeeds or timeout passes, and returns the
// time it took.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
	return 0
}

// progress shows lab set-up progress (the first run builds kube-apiserver
// for minutes) on stderr as it happens, not buffered in the test log.
type progress struct{}

func (progress) Write(p []byte) (int, error) { return os.Stderr.Write(p) }

func netconfClient(n *lab.Node) *netconf.Client { return netconf.NewClient(n.Socket) }

// atLeast returns list, failing the test when it has fewer than n
// elements: a loop that checks each element of an empty list would pass
// without checking anything.
func atLeast[T any](t *testing.T, n int, what string, list []T) []T {
	t.Helper()
	if len(list) < n {
		t.Fatalf("%s: %d, want at least %d: %v", what, len(list), n, list)
	}
	return list
}
