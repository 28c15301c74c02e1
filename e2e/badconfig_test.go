package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wirelace/wirelace/daemon/config"
	"github.com/wirelace/wirelace/e2e/lab"
)

// runDaemon runs wirelaced in node n with args until it exits by itself and
// returns its exit code and stderr.
func runDaemon(t *testing.T, n *lab.Node, args ...string) (int, string) {
	t.Helper()
	argv := n.Argv(filepath.Join(repoRoot(t), "bin", "wirelaced"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("wirelaced %v did not exit on bad configuration; stderr:\n%s", args, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestBadConfiguration: each mistake an operator can make gives a non-zero
// exit and one line saying what to fix, and leaves no device behind.
func TestBadConfiguration(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	running := startNodes(t, l, "n1")[0]
	idle, err := l.AddNode(ctx, "n2")
	if err != nil {
		t.Fatal(err)
	}
	// Nodes whose Node sets a port (config.ListenPortAnnotation): one that
	// is no port, one that is running's.
	notAPort, err := l.AddNode(ctx, "n3", lab.WithAnnotations(map[string]string{config.ListenPortAnnotation: "51820x"}))
	if err != nil {
		t.Fatal(err)
	}
	takenPort, err := l.AddNode(ctx, "n4", lab.WithAnnotations(map[string]string{config.ListenPortAnnotation: "51820"}))
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	badKeyDir := filepath.Join(dir, "badkey")
	os.MkdirAll(badKeyDir, 0o700)
	os.WriteFile(filepath.Join(badKeyDir, "wireguard.key"), []byte("this is not a key\n"), 0o600)
	openKeyDir := filepath.Join(dir, "openkey")
	os.MkdirAll(openKeyDir, 0o700)
	os.WriteFile(filepath.Join(openKeyDir, "wireguard.key"), []byte("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n"), 0o644)
	unreachable := filepath.Join(dir, "unreachable.kubeconfig")
	kc, err := os.ReadFile(idle.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(unreachable, bytes.ReplaceAll(kc, []byte("198.18.0.1:6443"), []byte("198.18.0.1:1")), 0o600)
	if bytes.Equal(kc, mustRead(t, unreachable)) {
		t.Fatal("could not point the kubeconfig elsewhere; server line changed?")
	}

	base := func(n *lab.Node, stateDir string, extra ...string) []string {
		return append([]string{
			"--node-name", n.Name, "--kubeconfig", n.Kubeconfig, "--state-dir", stateDir,
			"--socket", filepath.Join(dir, n.Name+"-"+filepath.Base(stateDir)+".sock"), "--interface", "lace9",
		}, extra...)
	}
	cases := []struct {
		name string
		node *lab.Node
		args []string
		want string
	}{
		{"garbage key file", idle, base(idle, badKeyDir), "does not hold a base64 WireGuard key"},
		{"key file readable by others", idle, base(idle, openKeyDir), "chmod 600"},
		{"invalid mesh CIDR", idle, base(idle, filepath.Join(dir, "s1"), "--mesh-cidrs", "10.77.0.0/33"), "is not a valid CIDR"},
		{"mesh CIDR with host bits", idle, base(idle, filepath.Join(dir, "s2"), "--mesh-cidrs", "10.77.1.0/16"), "did you mean 10.77.0.0/16"},
		{"apiserver unreachable", idle, append(base(idle, filepath.Join(dir, "s3")), "--kubeconfig", unreachable), "cannot reach the Kubernetes API"},
		{"port in use", running, base(running, filepath.Join(dir, "s4")), "UDP port 51820 is in use"},
		{"missing kubeconfig", idle, append(base(idle, filepath.Join(dir, "s5")), "--kubeconfig", filepath.Join(dir, "nope")), "load kubeconfig"},
		{"listen port annotation not a port", notAPort, base(notAPort, filepath.Join(dir, "s6")), `Node n3: annotation wirelace.io/listen-port="51820x": want a UDP port`},
		// Run beside running's daemon, on a free port by flag: the Node's
		// annotation moves it onto running's.
		{"annotated port in use", running, base(takenPort, filepath.Join(dir, "s7"), "--listen-port", "51999", "--metrics-listen", ""),
			"Node n4: UDP port 51820 is in use by another process: stop it or change the Node's wirelace.io/listen-port annotation"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := runDaemon(t, tc.node, tc.args...)
			if code == 0 {
				t.Fatalf("exit code 0; stderr:\n%s", stderr)
			}
			var errLines []string
			for _, line := range strings.Split(stderr, "\n") {
				if strings.HasPrefix(line, "wirelaced: ") {
					errLines = append(errLines, line)
				}
			}
			if len(errLines) != 1 || !strings.Contains(errLines[0], tc.want) {
				t.Fatalf("want one line 'wirelaced: ...%s...', got %q; stderr:\n%s", tc.want, errLines, stderr)
			}
			t.Logf("exit %d: %s", code, errLines[0])
			// Nothing half-made: no device appeared.
			if out, err := tc.node.Exec(ctx, "ip", "link", "show", "lace9"); err == nil {
				t.Fatalf("a failed start left a device behind: %s", out)
			}
		})
	}
	// The running node was not disturbed by the failed second daemon.
	if err := running.WaitReady(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
