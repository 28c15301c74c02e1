package cniinstall

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// installState is what the installer wrote, kept in the state dir so that
// --uninstall, run later and by another process, can undo exactly that.
type installState struct {
	Mode Mode `json:"mode"`
	// Source is the file whose original bytes are kept in <Source>.orig:
	// the primary's config as found (chained), or a foreign file that stood
	// at --conf-name (standalone).
	Source string `json:"source,omitempty"`
	// Target is the file Wirelace was written into, in the conf dir.
	Target string `json:"target,omitempty"`
	// Converted: Source was a single-plugin conf, moved aside to
	// Source+".wirelace-orig" after Target was written from it.
	Converted bool `json:"converted,omitempty"`
	// Binaries installed into the CNI bin dir.
	Binaries []string `json:"binaries,omitempty"`
}

// stateStore keeps installState and the backups in one directory.
type stateStore struct{ dir string }

const (
	stateFile    = "state.json"
	backupSuffix = ".orig"
)

// load reads the state; found is false when nothing was installed.
func (s stateStore) load() (st installState, found bool, err error) {
	b, err := os.ReadFile(filepath.Join(s.dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("install state %s: %w", filepath.Join(s.dir, stateFile), err)
	}
	return st, true, nil
}

func (s stateStore) save(st installState) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	return writeFileAtomic(filepath.Join(s.dir, stateFile), append(b, '\n'), 0o600)
}

// saveBackup keeps the original bytes and mode of the conf dir's file name.
func (s stateStore) saveBackup(name string, data []byte, perm fs.FileMode) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	return writeFileAtomic(s.backupPath(name), data, perm)
}

// backup reads the original bytes and mode of name; ok is false if none
// were kept.
func (s stateStore) backup(name string) (data []byte, perm fs.FileMode, ok bool, err error) {
	if name == "" {
		return nil, 0, false, nil
	}
	path := s.backupPath(name)
	if data, ok, err = readFile(path); !ok {
		return nil, 0, false, err
	}
	return data, permOf(path, 0o644), true, nil
}

func (s stateStore) removeBackup(name string) error {
	if name == "" {
		return nil
	}
	return removeDurable(s.backupPath(name))
}

func (s stateStore) backupPath(name string) string {
	return filepath.Join(s.dir, name+backupSuffix)
}

// remove deletes the state dir with every backup in it.
func (s stateStore) remove() error { return os.RemoveAll(s.dir) }
