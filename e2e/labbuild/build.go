package labbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
)

// ensureTargets builds targets from the lab module into
// cacheDir/lab-<KubernetesVersion>/<group>/bin and returns that directory,
// or reuses it when the stamp file there records this recipe and every
// binary is in place. Progress goes to p.
func ensureTargets(ctx context.Context, cacheDir, group string, targets []buildTarget, p *progressWriter, what string) (string, error) {
	root, err := filepath.Abs(filepath.Join(cacheDir, "lab-"+KubernetesVersion, group))
	if err != nil {
		return "", fmt.Errorf("resolve cache dir: %w", err)
	}
	binDir := filepath.Join(root, "bin")
	shared, err := sharedModules(cacheDir)
	if err != nil {
		return "", err
	}
	var bins []string
	for _, t := range targets {
		bins = append(bins, filepath.Join(binDir, t.name()))
	}
	reused, err := ensureStamped(ctx, root, filepath.Join(binDir, "stamp"), groupStampText(group, shared), bins, p, func() error {
		// Leftovers of builds that were killed before they could clean up.
		if stale, _ := filepath.Glob(filepath.Join(binDir, "*.tmp-*")); len(stale) > 0 {
			p.Printf("removing %d leftover(s) of interrupted builds", len(stale))
			for _, f := range stale {
				_ = os.RemoveAll(f)
			}
		}
		start := time.Now()
		src, err := ensureLabModule(ctx, cacheDir, shared, p)
		if err != nil {
			return fmt.Errorf("build %s: %w", what, err)
		}
		p.Printf("building %s into %s (cold: minutes)", what, binDir)
		if err := buildTargets(ctx, src, binDir, targets, p); err != nil {
			return fmt.Errorf("build %s: %w", what, err)
		}
		p.Printf("built %s in %s", what, time.Since(start).Round(time.Second))
		return nil
	})
	if err != nil {
		return "", err
	}
	if reused {
		p.Printf("reusing %s from %s", what, binDir)
	}
	return binDir, nil
}

// ensureStamped runs build, unless the file stamp says stampText and every
// file in need is an executable file; it then writes the stamp. It holds an
// exclusive lock on root/.lock while it checks again and makes, so that
// parallel test packages and the background build of make test make a thing
// once, and a process that finds it being made waits for it. The stamp is
// removed before build starts and written only after it succeeded, so an
// interruption can never leave a stamp next to a mix of old and new files.
func ensureStamped(ctx context.Context, root, stamp, stampText string, need []string, p *progressWriter, build func() error) (reused bool, err error) {
	if groupUpToDate(stamp, stampText, need) {
		return true, nil
	}
	if err := os.MkdirAll(filepath.Dir(stamp), 0o755); err != nil {
		return false, fmt.Errorf("create %s: %w", filepath.Dir(stamp), err)
	}
	unlock, err := lockFile(ctx, filepath.Join(root, ".lock"), p)
	if err != nil {
		return false, err
	}
	defer unlock()
	if groupUpToDate(stamp, stampText, need) { // made by another process while we waited
		return true, nil
	}
	if err := os.Remove(stamp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("remove stale stamp: %w", err)
	}
	if err := build(); err != nil {
		return false, err
	}
	if err := writeFileAtomic(stamp, []byte(stampText), 0o644); err != nil {
		return false, fmt.Errorf("write stamp: %w", err)
	}
	return false, nil
}

// groupStampText identifies a complete build of a group: the lab module's
// recipe and the group's name. It is written last, after every binary was
// renamed into place.
func groupStampText(group string, shared []module.Version) string {
	return labStampText(shared) + "group " + group + "\n"
}

// groupUpToDate reports whether the stamp says stampText and every file in
// need is an executable file.
func groupUpToDate(stamp, stampText string, need []string) bool {
	b, err := os.ReadFile(stamp)
	if err != nil || string(b) != stampText {
		return false
	}
	for _, f := range need {
		fi, err := os.Stat(f)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// buildTargets builds every target with one go build in the module in
// srcDir, into a temporary directory in binDir (one go command compiles each
// shared package once and links the binaries in parallel), checks that each
// runs and reports its version, and only then renames each into binDir: an
// interrupted or broken build never leaves a file under a final name.
func buildTargets(ctx context.Context, srcDir, binDir string, targets []buildTarget, p *progressWriter) error {
	tmp := filepath.Join(binDir, fmt.Sprintf("build.tmp-%d", os.Getpid()))
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer os.RemoveAll(tmp)
	args := []string{"build", "-v", "-trimpath", "-tags", labBuildTags, "-ldflags", labLdflags(), "-o", tmp + "/"}
	for _, t := range targets {
		args = append(args, t.pkg)
	}
	if err := runGo(ctx, srcDir, p, nil, args...); err != nil {
		return err
	}
	for _, t := range targets {
		if err := checkVersion(ctx, filepath.Join(tmp, t.built()), t); err != nil {
			return err
		}
	}
	for _, t := range targets {
		if err := os.Rename(filepath.Join(tmp, t.built()), filepath.Join(binDir, t.name())); err != nil {
			return fmt.Errorf("install %s: %w", t.name(), err)
		}
	}
	return nil
}

// checkVersion runs bin with the target's version arguments and an empty
// environment and looks for the version in what it prints. The exit status
// is not checked: a CNI plugin that prints its version exits non-zero.
func checkVersion(ctx context.Context, bin string, t buildTarget) error {
	cmd := exec.CommandContext(ctx, bin, t.versionArgs...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), t.want) {
		return fmt.Errorf("%s %s printed %q (%v), want it to mention %s", t.name(), strings.Join(t.versionArgs, " "),
			strings.TrimSpace(string(out)), err, t.want)
	}
	return nil
}

// writeKubeWrapper writes, in srcDir, a wrapper module named modPath that
// requires k8s.io/kubernetes at KubernetesVersion with its staging modules
// replaced by their published versions (steps 1 and 2 of a build; see
// gomod.go for why the wrapper is needed).
func writeKubeWrapper(ctx context.Context, srcDir, modPath string, shared []module.Version, p *progressWriter) error {
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return fmt.Errorf("create wrapper module dir: %w", err)
	}
	// A minimal module to run `go mod download` in: outside any module the go
	// command could pick up an enclosing repository's go.mod (the default
	// cache lives inside the wirelace repository) and touch its go.sum.
	bootstrap := fmt.Sprintf("module %s\n\ngo 1.21\n", modPath)
	if err := os.WriteFile(filepath.Join(srcDir, "go.mod"), []byte(bootstrap), 0o644); err != nil {
		return fmt.Errorf("write bootstrap go.mod: %w", err)
	}
	p.Printf("step 1/4: fetch k8s.io/kubernetes@%s go.mod", KubernetesVersion)
	kubeGoMod, err := downloadGoMod(ctx, srcDir, "k8s.io/kubernetes@"+KubernetesVersion, p)
	if err != nil {
		return err
	}
	gomod, err := wrapperGoMod(modPath, kubeGoMod, KubernetesVersion, shared)
	if err != nil {
		return err
	}
	p.Printf("step 2/4: write wrapper module %s", filepath.Join(srcDir, "go.mod"))
	if err := os.WriteFile(filepath.Join(srcDir, "go.mod"), gomod, 0o644); err != nil {
		return fmt.Errorf("write wrapper go.mod: %w", err)
	}
	return nil
}

// downloadGoMod returns the go.mod text of module@version, fetched through
// the module proxy like any other module.
func downloadGoMod(ctx context.Context, dir, modVersion string, p *progressWriter) ([]byte, error) {
	var out bytes.Buffer
	runErr := runGo(ctx, dir, p, &out, "mod", "download", "-json", modVersion)
	var info struct{ GoMod, Error string }
	if err := json.Unmarshal(out.Bytes(), &info); err != nil {
		if runErr != nil {
			return nil, runErr
		}
		return nil, fmt.Errorf("parse go mod download -json output %q: %w", out.String(), err)
	}
	if info.Error != "" {
		return nil, fmt.Errorf("go mod download %s: %s", modVersion, info.Error)
	}
	if runErr != nil {
		return nil, runErr
	}
	b, err := os.ReadFile(info.GoMod)
	if err != nil {
		return nil, fmt.Errorf("read go.mod of %s: %w", modVersion, err)
	}
	return b, nil
}

// writeFileAtomic writes data to a temporary file and renames it over path,
// so readers see either the old or the new content, never a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
