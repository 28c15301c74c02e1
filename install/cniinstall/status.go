package cniinstall

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/wirelace/wirelace/netconf"
)

// State and Status are the status file's, whose format is the daemon's
// contract (netconf): wirelaced shows it in its own status.
type (
	State  = netconf.InstallState
	Status = netconf.InstallStatus
)

// The installer's states.
const (
	StateInstalled   = netconf.InstallInstalled
	StateConflict    = netconf.InstallConflict
	StateUninstalled = netconf.InstallUninstalled
	StateError       = netconf.InstallError
)

// ReadStatus reads a status file.
func ReadStatus(path string) (Status, error) { return netconf.ReadInstallStatus(path) }

// statusFile writes the status file when what it says changes.
type statusFile struct {
	path string
	last Status
}

// set writes s (stamped now) unless only the time would change. An empty
// path writes nothing.
func (f *statusFile) set(s Status, now time.Time) error {
	if f.path == "" || s == f.last {
		return nil
	}
	stamped := s
	stamped.Updated = now.UTC().Format(time.RFC3339)
	b, _ := json.Marshal(stamped)
	if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(f.path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	f.last = s
	return nil
}
