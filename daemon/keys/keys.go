// Package keys keeps a node's two long-lived private keys on disk: the
// WireGuard key that identifies it to peers, and a separate control key that
// authenticates probes and relay sessions. Keeping them apart means the
// control plane never needs the key that decrypts traffic.
package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// File names under the state directory.
const (
	WireGuardFile = "wireguard.key"
	ControlFile   = "control.key"
)

// Keys are a node's private keys.
type Keys struct {
	WireGuard wgtypes.Key
	Control   wgtypes.Key
}

// LoadOrCreate reads both keys from dir, generating and saving any that do not
// exist yet. A key file that exists but cannot be used is an error, never a
// reason to generate a new key: that would silently change the node's
// identity.
func LoadOrCreate(dir string) (Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Keys{}, fmt.Errorf("create state dir: %w", err)
	}
	wg, err := loadOrCreate(filepath.Join(dir, WireGuardFile))
	if err != nil {
		return Keys{}, err
	}
	ctl, err := loadOrCreate(filepath.Join(dir, ControlFile))
	if err != nil {
		return Keys{}, err
	}
	if wg == ctl {
		return Keys{}, fmt.Errorf("%s and %s hold the same key; remove %s to generate a fresh control key",
			WireGuardFile, ControlFile, filepath.Join(dir, ControlFile))
	}
	return Keys{WireGuard: wg, Control: ctl}, nil
}

func loadOrCreate(path string) (wgtypes.Key, error) {
	k, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = wgtypes.GeneratePrivateKey()
	if err != nil {
		return k, fmt.Errorf("generate key: %w", err)
	}
	return k, Save(path, k)
}

// Load reads a base64 private key from path and refuses a file that group or
// others may read.
func Load(path string) (wgtypes.Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return wgtypes.Key{}, fmt.Errorf("key file %s is not a regular file; remove it to generate a new key", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return wgtypes.Key{}, fmt.Errorf("key file %s has mode %#o; it must not be readable by group or others (chmod 600 %s)", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("read key file: %w", err)
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("key file %s does not hold a base64 WireGuard key (%v); restore it or remove it to generate a new key", path, err)
	}
	return k, nil
}

// Save writes k to path with mode 0600, atomically, so a crash never leaves
// a truncated key behind.
func Save(path string, k wgtypes.Key) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save key: %w", err)
	}
	if _, err := tmp.WriteString(k.String() + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("save key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	return nil
}
