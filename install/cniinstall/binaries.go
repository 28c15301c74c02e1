package cniinstall

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// binaryPerm is the mode of an installed plugin binary.
const binaryPerm fs.FileMode = 0o755

// copyBinaries installs each named binary from srcDir into dstDir, each by
// an atomic replace (a runtime executing one meanwhile runs either the old
// or the new file), skipping those whose content is already identical. It
// returns the names it copied.
func copyBinaries(log *slog.Logger, srcDir, dstDir string, names []string) ([]string, error) {
	if st, err := os.Stat(dstDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("CNI bin dir %s is not a directory (is the host's CNI bin dir mounted there?): %w", dstDir, notDirErr(err))
	}
	var copied []string
	for _, name := range names {
		src, dst := filepath.Join(srcDir, name), filepath.Join(dstDir, name)
		same, err := sameContent(src, dst)
		if err != nil {
			return copied, fmt.Errorf("binary %s not found in %s (check --bin-src-dir and the image): %w", name, srcDir, err)
		}
		if same {
			if perm := permOf(dst, binaryPerm); perm != binaryPerm {
				if err := os.Chmod(dst, binaryPerm); err != nil {
					return copied, err
				}
			}
			log.Debug("binary up to date", "file", dst)
			continue
		}
		if err := copyFileAtomic(src, dst, binaryPerm); err != nil {
			return copied, fmt.Errorf("install %s: %w", dst, err)
		}
		log.Info("installed binary", "file", dst, "from", src)
		copied = append(copied, name)
	}
	return copied, nil
}

// removeBinaries removes the named binaries from dir.
func removeBinaries(log *slog.Logger, dir string, names []string) error {
	var errs []error
	for _, name := range names {
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		log.Info("removed binary", "file", path)
	}
	return errors.Join(errs...)
}

// notDirErr is err, or a plain "not a directory" when the path exists.
func notDirErr(err error) error {
	if err == nil {
		return errors.New("not a directory")
	}
	return err
}
