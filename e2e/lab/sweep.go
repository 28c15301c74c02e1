package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// ownerDir records which process owns each lab prefix, so a later run can
// tell a dead run's leftovers from a live run's resources.
const ownerDir = "/run/wirelace-lab"

var prefixRE = regexp.MustCompile(`^(wl[0-9a-f]{4})-`)

func claimPrefix(prefix string) error {
	if err := os.MkdirAll(ownerDir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(ownerDir, prefix), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("prefix %s taken: %w", prefix, err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
	return err
}

func releasePrefix(prefix string) { os.Remove(filepath.Join(ownerDir, prefix)) }

// alive reports whether the run owning prefix still runs.
func alive(prefix string) bool {
	b, err := os.ReadFile(filepath.Join(ownerDir, prefix))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// Sweep removes the network namespaces of lab runs whose process is gone
// (killed with SIGKILL, say, before it could clean up). Their processes died
// with them (Pdeathsig); namespaces and owner files are what remains.
func Sweep(ctx context.Context) []string {
	var swept []string
	for _, name := range listNetns(ctx) {
		m := prefixRE.FindStringSubmatch(name)
		if m == nil || alive(m[1]) {
			continue
		}
		if _, err := run(ctx, "ip", "netns", "del", name); err == nil {
			swept = append(swept, name)
		}
		releasePrefix(m[1])
	}
	return swept
}

// netnsWithPrefix lists the network namespaces of one lab run.
func netnsWithPrefix(ctx context.Context, prefix string) []string {
	var names []string
	for _, name := range listNetns(ctx) {
		if strings.HasPrefix(name, prefix+"-") {
			names = append(names, name)
		}
	}
	return names
}

// listNetns lists the names of all network namespaces (`ip netns list`).
func listNetns(ctx context.Context) []string {
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}
