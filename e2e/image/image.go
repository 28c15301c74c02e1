package image

import (
	"archive/tar"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Repository is the image's name in the manifests (install/deploy, the
// Helm chart's default image.repository).
const Repository = "wirelace/wirelace"

// epoch is every entry's modification time, so that the same binaries
// always give the same layer digest.
var epoch = time.Unix(0, 0)

// LoadSpec parses the Dockerfile at path.
func LoadSpec(dockerfile string) (Spec, error) {
	f, err := os.Open(dockerfile)
	if err != nil {
		return Spec{}, err
	}
	defer f.Close()
	s, err := ParseDockerfile(f)
	if err != nil {
		return Spec{}, fmt.Errorf("%s: %w", dockerfile, err)
	}
	return s, nil
}

// Build assembles the image from binDir (bin/ after `make build`): one
// layer holding spec's files, and spec's ENTRYPOINT and ENV. It has no base
// layer: distroless/static adds only CA certificates, /etc/passwd and
// tzdata, which nothing the lab runs from the image reads. Every binary
// must be a static ELF executable, since the real image has no libc.
func Build(binDir string, spec Spec) (v1.Image, error) {
	for _, f := range spec.Files {
		if err := checkStatic(filepath.Join(binDir, f.Name)); err != nil {
			return nil, err
		}
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeLayer(pw, binDir, spec.Files)) }()
		return pr, nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = spec.Entrypoint
	cfg.Config.Env = spec.Env
	return mutate.ConfigFile(img, cfg)
}

// WriteTarball writes img as a docker-save tarball tagged ref (e.g.
// wirelace/wirelace:0.1.0), for `ctr -n k8s.io images import`.
func WriteTarball(out, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// BuildTarball builds the image of the repository at root from root/bin as
// root/Dockerfile says, and writes it to out tagged ref.
func BuildTarball(root, out, ref string) error {
	spec, err := LoadSpec(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return err
	}
	img, err := Build(filepath.Join(root, "bin"), spec)
	if err != nil {
		return err
	}
	return WriteTarball(out, ref, img)
}

// writeLayer writes the layer's tar: the parent directories, then each
// file, owned by root, mode 0755.
func writeLayer(w io.Writer, binDir string, files []File) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.Path); d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return err
			}
		}
		if err := addFile(tw, filepath.Join(binDir, f.Name), f.Path); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addFile(tw *tar.Writer, src, dst string) error {
	r, err := os.Open(src)
	if err != nil {
		return err
	}
	defer r.Close()
	fi, err := r.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: 0o755, Size: fi.Size(), ModTime: epoch, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, r)
	return err
}

// checkStatic fails unless path is an ELF executable without a program
// interpreter, i.e. one that runs in an image without libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not an ELF executable (run make build): %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (cgo); the image has no libc: build with CGO_ENABLED=0", path)
		}
	}
	return nil
}
