package image

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func repoRoot() string {
	// go test runs a package's tests in its directory, e2e/image; the
	// binaries are built -trimpath, so runtime.Caller has no real paths.
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

func loadRepoSpec(t *testing.T) Spec {
	t.Helper()
	s, err := LoadSpec(filepath.Join(repoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDockerfileShape pins what the Dockerfile promises the manifests:
// every binary under /opt/wirelace/bin (wirelace-install's --bin-src-dir),
// that directory on PATH, wirelaced as the entrypoint.
func TestDockerfileShape(t *testing.T) {
	s := loadRepoSpec(t)
	want := []string{"wirelaced", "wirelacectl", "wirelace-relay", "wirelace-install", "wirelace", "wirelace-ipam"}
	var names []string
	for _, f := range s.Files {
		names = append(names, f.Name)
		if f.Path != "/opt/wirelace/bin/"+f.Name {
			t.Errorf("%s goes to %s, want /opt/wirelace/bin/%s", f.Name, f.Path, f.Name)
		}
	}
	if !slices.Equal(names, want) {
		t.Errorf("Dockerfile copies %v, want %v", names, want)
	}
	if !slices.Equal(s.Entrypoint, []string{"/opt/wirelace/bin/wirelaced"}) {
		t.Errorf("ENTRYPOINT %v", s.Entrypoint)
	}
	if !slices.ContainsFunc(s.Env, func(kv string) bool {
		return strings.HasPrefix(kv, "PATH=/opt/wirelace/bin:")
	}) {
		t.Errorf("ENV %v: /opt/wirelace/bin is not first on PATH", s.Env)
	}
}

// TestDockerfileBuildsWhatItCopies checks the build stage: every binary the
// final stage copies is built by its `go build` from a main package, and
// every main package of the repository outside e2e is in the image.
func TestDockerfileBuildsWhatItCopies(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := logicalLines(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	var built []string
	for _, l := range lines {
		if strings.EqualFold(l.instr, "RUN") && strings.Contains(l.args, "go build") {
			if !strings.Contains(l.args, "CGO_ENABLED=0") || !strings.Contains(l.args, "-trimpath") {
				t.Errorf("go build without CGO_ENABLED=0 or -trimpath: %s", l.args)
			}
			for _, f := range strings.Fields(l.args) {
				if strings.HasPrefix(f, "./") {
					built = append(built, filepath.Base(f))
				}
			}
		}
	}
	var copied []string
	for _, f := range loadRepoSpec(t).Files {
		copied = append(copied, f.Name)
	}
	slices.Sort(built)
	slices.Sort(copied)
	if !slices.Equal(built, copied) {
		t.Errorf("the build stage builds %v, the final stage copies %v", built, copied)
	}

	cmd := exec.Command("go", "list", "-e", "-f", "{{if eq .Name \"main\"}}{{.ImportPath}}{{end}}", "./...")
	cmd.Dir = repoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "/e2e/") || strings.Contains(pkg, "/testdata/") {
			continue
		}
		if !slices.Contains(copied, filepath.Base(pkg)) {
			t.Errorf("main package %s is not in the image", pkg)
		}
	}
}

func TestParseDockerfile(t *testing.T) {
	good := `# syntax=docker/dockerfile:1
FROM golang AS build
RUN go build -o /out/ ./a
FROM scratch
# the binaries
COPY --from=build \
    /out/a \

    /out/b /opt/x/bin/
COPY --from=build /out/c /usr/bin/see
ENV PATH=/opt/x/bin:/bin LANG=C
ENTRYPOINT ["/opt/x/bin/a", "run"]
`
	s, err := ParseDockerfile(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{
		Files:      []File{{"a", "/opt/x/bin/a"}, {"b", "/opt/x/bin/b"}, {"c", "/usr/bin/see"}},
		Env:        []string{"PATH=/opt/x/bin:/bin", "LANG=C"},
		Entrypoint: []string{"/opt/x/bin/a", "run"},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got %+v\nwant %+v", s, want)
	}

	for name, bad := range map[string]string{
		"no FROM":              "COPY --from=b /a /b\n",
		"RUN in final":         "FROM scratch\nRUN ln -s a b\nCOPY --from=b /a /x/\nENTRYPOINT [\"/x/a\"]\n",
		"COPY from context":    "FROM scratch\nCOPY a /x/\nENTRYPOINT [\"/x/a\"]\n",
		"two into a file":      "FROM scratch\nCOPY --from=b /a /b /x\nENTRYPOINT [\"/x\"]\n",
		"wildcard":             "FROM scratch\nCOPY --from=b /out/* /x/\nENTRYPOINT [\"/x/a\"]\n",
		"shell entrypoint":     "FROM scratch\nCOPY --from=b /a /x/\nENTRYPOINT /x/a\n",
		"chmod flag":           "FROM scratch\nCOPY --from=b --chmod=700 /a /x/\nENTRYPOINT [\"/x/a\"]\n",
		"ENV with variable":    "FROM scratch\nCOPY --from=b /a /x/\nENV PATH=$PATH:/x\nENTRYPOINT [\"/x/a\"]\n",
		"dangling backslash":   "FROM scratch\nCOPY --from=b /a \\\n",
		"no entrypoint":        "FROM scratch\nCOPY --from=b /a /x/\n",
		"relative destination": "FROM scratch\nCOPY --from=b /a x/\nENTRYPOINT [\"/x/a\"]\n",
	} {
		if _, err := ParseDockerfile(strings.NewReader(bad)); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

// staticBinary builds a tiny static Go program once: the image refuses
// anything else.
func staticBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "x")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build a static binary: %v\n%s", err, b)
	}
	return out
}

// TestDockerfileMatchesImage builds the lab image from a bin/ of static
// binaries and reads the tarball back as `ctr images import` would: one
// layer whose files are exactly the Dockerfile's COPY list, the Dockerfile's
// ENTRYPOINT and ENV, tagged as the manifests name it.
func TestDockerfileMatchesImage(t *testing.T) {
	spec := loadRepoSpec(t)
	bin := t.TempDir()
	exe, err := os.ReadFile(staticBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range spec.Files {
		// Each file distinct, so a mix-up of names would show.
		if err := os.WriteFile(filepath.Join(bin, f.Name), append(slices.Clone(exe), f.Name...), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img, err := Build(bin, spec)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "image.tar")
	ref := Repository + ":0.0.0-test"
	if err := WriteTarball(out, ref, img); err != nil {
		t.Fatal(err)
	}

	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(out) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{ref}) {
		t.Fatalf("manifest.json %+v, want one image tagged %s", m, ref)
	}
	tag, _ := name.NewTag(ref)
	back, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := back.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, spec.Entrypoint) || !slices.Equal(cfg.Config.Env, spec.Env) {
		t.Errorf("config entrypoint %v env %v, want %v %v", cfg.Config.Entrypoint, cfg.Config.Env, spec.Entrypoint, spec.Env)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	layers, err := back.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Mode&0o111 == 0 || h.Uid != 0 {
			t.Errorf("%s: mode %o uid %d, want executable and root's", h.Name, h.Mode, h.Uid)
		}
		b, _ := io.ReadAll(tr)
		files["/"+h.Name] = string(b[len(exe):])
	}
	want := map[string]string{}
	for _, f := range spec.Files {
		want[f.Path] = f.Name
	}
	if !reflect.DeepEqual(files, want) {
		t.Errorf("image files (path: source) %v\nDockerfile COPY list   %v", files, want)
	}
}

func TestBuildRefusesDynamicBinaries(t *testing.T) {
	bin := t.TempDir()
	spec := Spec{Files: []File{{"sh", "/bin/sh"}}, Entrypoint: []string{"/bin/sh"}}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to stand in for a dynamic binary")
	}
	b, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "sh"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(bin, spec); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("Build with a dynamic binary: %v, want an error naming CGO_ENABLED=0", err)
	}
	if err := os.WriteFile(filepath.Join(bin, "sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(bin, spec); err == nil {
		t.Error("Build with a script: no error")
	}
}

// TestBuildFromMakeOutput builds the image from the real bin/ when `make
// build` has left static binaries there.
func TestBuildFromMakeOutput(t *testing.T) {
	root := repoRoot()
	spec := loadRepoSpec(t)
	for _, f := range spec.Files {
		p := filepath.Join(root, "bin", f.Name)
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s missing: run make build", p)
		}
		if err := checkStatic(p); err != nil {
			t.Skipf("bin/ is not what the image needs: %v", err)
		}
	}
	out := filepath.Join(t.TempDir(), "image.tar")
	if err := BuildTarball(root, out, Repository+":dev"); err != nil {
		t.Fatal(err)
	}
}
