package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The images every kubelet node has. The lab has no registry and no Docker:
// both images hold one static Go binary (e2e/testdata/httpd), packed as a
// one-layer `docker save` archive and imported into each node's containerd.
// Pods must use imagePullPolicy: Never.
const (
	// PauseImage is the pod sandbox image (containerd's pinned sandbox).
	PauseImage = "wirelace.lab/pause:v1"
	// HTTPDImage serves "host=<pod name> remote=<addr>" on :8080; with
	// `-get URL` it is a client instead (see e2e/testdata/httpd).
	HTTPDImage = "wirelace.lab/httpd:v1"
)

// labImage is one image archive to import into every kubelet node.
type labImage struct {
	ref  string
	path string // docker-save tarball
}

// images builds the lab's image archives once per lab, under Dir/images.
func (l *Lab) images(ctx context.Context) ([]labImage, error) {
	l.imagesMu.Lock()
	defer l.imagesMu.Unlock()
	if l.imageFiles != nil {
		return l.imageFiles, nil
	}
	dir := filepath.Join(l.Dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "httpd")
	if err := l.buildImageBinary(ctx, bin); err != nil {
		return nil, err
	}
	// One binary, two images: the pause image runs it as `httpd -pause`.
	imgs := []struct {
		ref        string
		entrypoint []string
	}{
		{PauseImage, []string{"/httpd", "-pause"}},
		{HTTPDImage, []string{"/httpd"}},
	}
	var out []labImage
	for i, im := range imgs {
		path := filepath.Join(dir, fmt.Sprintf("image%d.tar", i))
		if err := writeImage(path, im.ref, bin, im.entrypoint); err != nil {
			return nil, fmt.Errorf("image %s: %w", im.ref, err)
		}
		out = append(out, labImage{ref: im.ref, path: path})
	}
	l.imageFiles = out
	return out, nil
}

// buildImageBinary builds e2e/testdata/httpd statically (an image has no
// libc) with the repository's go.mod; the go build cache makes this quick
// after the first run.
func (l *Lab) buildImageBinary(ctx context.Context, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build the lab's image binary: find go in PATH: %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./e2e/testdata/httpd")
	cmd.Dir = l.opts.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./e2e/testdata/httpd: %w: %s", err, b)
	}
	return nil
}

// writeImage writes a `docker save` archive of an image whose only layer
// holds bin as /<basename>, tagged ref.
func writeImage(path, ref, bin string, entrypoint []string) error {
	layerTar, err := singleFileTar(bin)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("make layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("append layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config = v1.Config{Entrypoint: entrypoint, Env: []string{"PATH=/"}, WorkingDir: "/"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return fmt.Errorf("set config: %w", err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// singleFileTar is a layer with one executable file at the root, owned by
// root, with a fixed mtime so the same binary gives the same layer.
func singleFileTar(bin string) ([]byte, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: filepath.Base(bin), Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// importImages loads the lab's images into the node's containerd, in the
// namespace the CRI uses.
func (n *Node) importImages(ctx context.Context, imgs []labImage) error {
	for _, im := range imgs {
		if _, err := run(ctx, n.lab.nodeBins.Ctr, "--address", n.Kubelet.ContainerdSocket, "--namespace", "k8s.io",
			"images", "import", im.path); err != nil {
			return fmt.Errorf("node %s: import %s: %w", n.Name, im.ref, err)
		}
	}
	return nil
}
