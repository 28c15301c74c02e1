package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestMakeInstallsDepsBeforeTests guards the README contract on a fresh
// machine: every make target that runs tests needing the lab's Debian
// packages (ping, ip, nft, ...) installs them first. `make -n` prints the
// commands in the order make would run them, without running any.
func TestMakeInstallsDepsBeforeTests(t *testing.T) {
	for _, target := range []string{"unit", "e2e", "test", "demo", "bench"} {
		out, err := exec.Command("make", "-n", "-C", repoRootDir(), target).CombinedOutput()
		if err != nil {
			t.Fatalf("make -n %s: %v\n%s", target, err, out)
		}
		lines := strings.Split(string(out), "\n")
		deps, firstTest := -1, -1
		for i, l := range lines {
			if deps < 0 && strings.Contains(l, "e2e/deps.sh") {
				deps = i
			}
			if firstTest < 0 && (strings.Contains(l, " test ") || strings.Contains(l, "wirelace-lab")) {
				firstTest = i
			}
		}
		if firstTest < 0 {
			t.Fatalf("make -n %s runs no test or lab command:\n%s", target, out)
		}
		if deps < 0 || deps > firstTest {
			t.Errorf("make %s runs %q before installing the lab packages (e2e/deps.sh at line %d):\n%s",
				target, lines[firstTest], deps, out)
		}
	}
}
