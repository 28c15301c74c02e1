package device

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wirelace/wirelace/internal/roottest"
)

// The device tests change links, routes and the UDP port of a network
// namespace, and the UAPI socket directory /var/run/wireguard is shared by all
// namespaces. So each test re-executes this test binary as a child that runs
// entirely inside a throwaway network namespace (wireguard-go's socket lands in
// the namespace of the process, not of the thread) and in a private mount
// namespace with a fresh tmpfs on /run. The parent creates and deletes the
// namespaces; the child, marked by childEnv, does the work.

const childEnv = "WIRELACE_DEVICE_TEST_CHILD"

// inChild reports whether this process is a test child. The parent sets
// childEnv to the inode of its own network namespace, and the child refuses to
// run in that one, where it would change the host.
func inChild(t *testing.T) bool {
	t.Helper()
	parentNS := os.Getenv(childEnv)
	if parentNS == "" {
		return false
	}
	if netnsInode(t) == parentNS {
		t.Fatalf("%s is set but this process is in its parent's network namespace", childEnv)
	}
	return true
}

// netnsInode identifies the network namespace of this process.
func netnsInode(t *testing.T) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(st.Ino, 10)
}

// needRoot fails the test unless it can create namespaces (see
// internal/roottest), and when the lab's tools are missing.
func needRoot(t *testing.T) {
	t.Helper()
	roottest.Require(t, "network and mount namespaces, TUN")
	for _, tool := range []string{"ip", "unshare", "wg", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s (run make deps): %v", tool, err)
		}
	}
}

// run runs a command and fails the test if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a network namespace with lo up, deleted when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	ns := "wlt-" + hex.EncodeToString(b[:])
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("delete netns %s: %v\n%s", ns, err, out)
		}
	})
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// childCmd returns a command that runs the test function named test of this
// binary as a child inside netns ns, with env added to its environment. The
// child is killed when the test ends.
func childCmd(t *testing.T, ns, test string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// ip netns exec, unshare and sh all exec, so the child keeps one PID and
	// killing it leaves nothing behind. Mounting over all of /run (rather than
	// /run/wireguard) avoids creating that directory on the host.
	script := `mount -t tmpfs tmpfs /run && exec "$0" "$@"`
	cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", ns,
		"unshare", "--mount", "--propagation", "private",
		"sh", "-c", script, exe, "-test.run=^"+test+"$", "-test.v", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), childEnv+"="+netnsInode(t))
	cmd.Env = append(cmd.Env, env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runChild runs test as a child in ns and fails t if the child fails.
func runChild(t *testing.T, ns, test string, env ...string) {
	t.Helper()
	out, err := childCmd(t, ns, test, env...).CombinedOutput()
	t.Logf("child %s in %s:\n%s", test, ns, out)
	if err != nil {
		t.Fatalf("child %s in %s: %v", test, ns, err)
	}
}

// readyLine is what a long-running child prints once it is set up.
const readyLine = "WIRELACE-TEST-READY"

// background is a child that keeps running until stop is called.
type background struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   strings.Builder
	done  chan struct{} // closed when the output is fully read
}

// startChild starts test as a child in ns and waits until it prints
// readyLine. The child should then run until its stdin is closed.
func startChild(t *testing.T, ns, test string, env ...string) *background {
	t.Helper()
	cmd := childCmd(t, ns, test, env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	bg := &background{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(bg.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			bg.mu.Lock()
			fmt.Fprintln(&bg.out, sc.Text())
			bg.mu.Unlock()
			if sc.Text() == readyLine {
				close(ready)
			}
		}
	}()
	t.Cleanup(func() { bg.stop(t) })
	select {
	case <-ready:
	case <-bg.done:
		bg.stop(t)
		t.Fatalf("child %s in %s exited before it was ready", test, ns)
	case <-time.After(30 * time.Second):
		bg.stop(t)
		t.Fatalf("child %s in %s not ready after 30s", test, ns)
	}
	return bg
}

// stop closes the child's stdin, waits for it and fails t if it failed. It
// may be called more than once.
func (bg *background) stop(t *testing.T) {
	t.Helper()
	if bg.cmd.ProcessState != nil {
		return
	}
	bg.stdin.Close()
	<-bg.done
	err := bg.cmd.Wait()
	bg.mu.Lock()
	t.Logf("background child output:\n%s", bg.out.String())
	bg.mu.Unlock()
	if err != nil {
		t.Errorf("background child: %v", err)
	}
}

// waitStdinEOF blocks a child until its parent closes its stdin.
func waitStdinEOF() {
	io.Copy(io.Discard, os.Stdin)
}

// testLogger logs to stderr, not t.Output: wireguard-go keeps logging from its
// goroutines for a moment after a test function returns.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// withTimeout returns a context for commands run by a child.
func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
