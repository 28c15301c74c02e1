package cniinstall

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildVersions builds testdata/versionbin once per version; each binary
// prints its version.
func buildVersions(t *testing.T, versions ...string) map[string]string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the test binary")
	}
	dir := t.TempDir()
	out := map[string]string{}
	for _, v := range versions {
		// One source dir per version, so that each copies in as "wirelace".
		src := filepath.Join(dir, v)
		os.Mkdir(src, 0o755)
		bin := filepath.Join(src, "wirelace")
		cmd := exec.Command(gobin, "build", "-o", bin, "-ldflags=-X=main.version="+v, "./testdata/versionbin")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
		out[v] = src
	}
	return out
}

// TestCopyBinariesAtomic replaces a binary over and over while another
// process executes it in a tight loop, as a runtime would: every execution
// must run a whole binary, old or new, never fail.
func TestCopyBinariesAtomic(t *testing.T) {
	t.Parallel()
	srcs := buildVersions(t, "v1", "v2")
	binDir := t.TempDir()
	log := testLogger(t)
	if _, err := copyBinaries(log, srcs["v1"], binDir, []string{"wirelace"}); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "wirelace")
	stop := filepath.Join(t.TempDir(), "stop")

	// A shell, not this process, forks the executions: a child forked here
	// would inherit the temporary file's write descriptor until its exec,
	// which makes an exec of that inode fail with ETXTBSY for reasons that
	// have nothing to do with the installer.
	loop := exec.Command("/bin/sh", "-c", `while [ ! -e "$STOP" ]; do out=$("$BIN" 2>&1); rc=$?; echo "$rc $out"; done`)
	loop.Env = append(os.Environ(), "BIN="+bin, "STOP="+stop)
	stdout, err := loop.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	seen := map[string]int{}
	var bad []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			if line == "0 v1" || line == "0 v2" {
				seen[line[2:]]++
			} else {
				bad = append(bad, line)
			}
			mu.Unlock()
		}
	}()
	// waitSeen waits until the loop has run version v n times in total.
	waitSeen := func(v string, n int) {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			c := seen[v]
			mu.Unlock()
			if c >= n {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("the loop never ran %s %d times", v, n)
	}

	waitSeen("v1", 1)
	const swaps = 20
	for i := range swaps {
		v := []string{"v2", "v1"}[i%2]
		copied, err := copyBinaries(log, srcs[v], binDir, []string{"wirelace"})
		if err != nil || len(copied) != 1 {
			t.Fatalf("swap %d to %s: copied %v, %v", i, v, copied, err)
		}
		mu.Lock()
		n := seen[v]
		mu.Unlock()
		waitSeen(v, n+3)
	}
	os.WriteFile(stop, nil, 0o644)
	<-done
	loop.Wait()

	if len(bad) > 0 {
		t.Errorf("%d executions failed while the binary was replaced, e.g. %q", len(bad), bad[0])
	}
	if seen["v1"] == 0 || seen["v2"] == 0 {
		t.Errorf("versions run: %v, want both", seen)
	}
	t.Logf("executions: %v across %d replacements", seen, swaps)
	if st, err := os.Stat(bin); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("installed binary: %v, %v; want mode 0755", st.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(binDir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestCopyBinariesSkipsIdentical(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(src, "wirelace"), []byte("#!/bin/sh\necho 1\n"), 0o755)
	os.WriteFile(filepath.Join(src, "wirelace-ipam"), []byte("#!/bin/sh\necho 2\n"), 0o755)
	names := []string{"wirelace", "wirelace-ipam"}
	log := testLogger(t)
	copied, err := copyBinaries(log, src, dst, names)
	if err != nil || len(copied) != 2 {
		t.Fatalf("first copy: %v, %v", copied, err)
	}
	before, _ := os.Stat(filepath.Join(dst, "wirelace"))
	os.Chmod(filepath.Join(dst, "wirelace-ipam"), 0o600) // mode is repaired without a copy
	copied, err = copyBinaries(log, src, dst, names)
	if err != nil || len(copied) != 0 {
		t.Fatalf("second copy of identical files: copied %v, %v", copied, err)
	}
	after, _ := os.Stat(filepath.Join(dst, "wirelace"))
	if before.Sys().(*syscall.Stat_t).Ino != after.Sys().(*syscall.Stat_t).Ino {
		t.Error("an identical binary was replaced")
	}
	if st, _ := os.Stat(filepath.Join(dst, "wirelace-ipam")); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v not repaired", st.Mode())
	}

	// A binary of the same size but other content is copied.
	os.WriteFile(filepath.Join(src, "wirelace"), []byte("#!/bin/sh\necho 3\n"), 0o755)
	if copied, err = copyBinaries(log, src, dst, names); err != nil || len(copied) != 1 || copied[0] != "wirelace" {
		t.Fatalf("copy after a change: %v, %v", copied, err)
	}

	if err := removeBinaries(log, dst, append(names, "never-installed")); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dst); len(left) != 0 {
		t.Errorf("left after removeBinaries: %v", left)
	}
}

func TestCopyBinariesErrors(t *testing.T) {
	src := t.TempDir()
	log := testLogger(t)
	_, err := copyBinaries(log, src, filepath.Join(t.TempDir(), "missing"), []string{"wirelace"})
	if err == nil || !strings.Contains(err.Error(), "CNI bin dir") {
		t.Errorf("missing bin dir: %v", err)
	}
	dst := t.TempDir()
	_, err = copyBinaries(log, src, dst, []string{"wirelace"})
	if err == nil || !strings.Contains(err.Error(), "binary wirelace not found in "+src) {
		t.Errorf("missing source binary: %v", err)
	}
	if left, _ := os.ReadDir(dst); len(left) != 0 {
		t.Errorf("left in the bin dir after a failed copy: %v", left)
	}
}
