package keys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateIsStable(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if first.WireGuard == first.Control {
		t.Fatal("wireguard and control keys must differ")
	}
	for _, f := range []string{WireGuardFile, ControlFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %#o, want 0600", f, fi.Mode().Perm())
		}
	}
	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Fatal("keys changed across loads")
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	cases := []struct {
		name  string
		setup func(path string)
		want  string
	}{
		{"world readable", func(p string) {
			LoadOrCreate(filepath.Dir(p))
			os.Chmod(p, 0o644)
		}, "chmod 600"},
		{"garbage", func(p string) { os.WriteFile(p, []byte("not a key\n"), 0o600) }, "does not hold a base64 WireGuard key"},
		{"directory", func(p string) { os.Mkdir(p, 0o700) }, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, WireGuardFile)
			tc.setup(path)
			_, err := LoadOrCreate(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
			// The bad file must be left for the operator, not replaced.
			if fi, err := os.Stat(path); err != nil {
				t.Fatalf("bad key file was removed: %v", err)
			} else if tc.name == "garbage" && fi.Size() != int64(len("not a key\n")) {
				t.Fatal("bad key file was overwritten")
			}
		})
	}
}
