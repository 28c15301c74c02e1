package cniinstall

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testLogger logs through t.Log, so a failing test shows what the
// installer said.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// tree is every file below a dir: path → mode and content.
type tree map[string]string

// snapshot reads the tree below dir.
func snapshot(t testing.TB, dir string) tree {
	t.Helper()
	out := tree{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out[rel+"/"] = info.Mode().String()
			return nil
		}
		b, err := os.ReadFile(path)
		out[rel] = info.Mode().String() + " " + string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diff describes how two trees differ, "" if they do not.
func (a tree) diff(b tree) string {
	var buf bytes.Buffer
	for k, v := range a {
		if w, ok := b[k]; !ok {
			buf.WriteString("only before: " + k + "\n")
		} else if v != w {
			buf.WriteString("changed: " + k + "\n  before: " + v + "\n  after:  " + w + "\n")
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			buf.WriteString("only after: " + k + "\n")
		}
	}
	return buf.String()
}

// writeFile writes a test file or fails.
func writeFile(t testing.TB, path string, data []byte, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
}

// readFileT reads a file or fails.
func readFileT(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
