package netconf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// A pending release is a DEL that could not reach the daemon. A runtime
// retries a failed DEL only sometimes (containerd gives up on some errors),
// so the plugin writes the release down next to the daemon's socket and
// DEL succeeds; wirelaced carries it out when it starts, and while it runs.
// The directory sits beside the socket so that plugin and daemon agree on
// it through the one path they already share, and it survives a daemon
// restart (it is not removed with the socket).

// PendingRelease is one release left for the daemon.
type PendingRelease struct {
	// IPAM releases the wirelace-ipam allocation of the key.
	IPAM bool `json:"ipam,omitempty"`
	// Chained releases the chained registration of the key in Network.
	Chained bool   `json:"chained,omitempty"`
	Network string `json:"network,omitempty"`
	AttachmentKey
}

// PendingDir is the pending-release directory of the daemon at socket.
func PendingDir(socket string) string {
	return filepath.Join(filepath.Dir(socket), "pending-release")
}

// name is the file name of r: one file per release, so a repeated DEL
// rewrites the same file rather than adding one.
func (r PendingRelease) name() string {
	kind := "ipam"
	if r.Chained {
		kind = "chained"
	}
	h := sha256.Sum256([]byte(strings.Join([]string{kind, r.Network, r.ContainerID, r.IfName}, "\x00")))
	return kind + "-" + hex.EncodeToString(h[:12]) + ".json"
}

// WritePendingRelease records r for the daemon at socket. The file appears
// whole or not at all (written aside, then renamed).
func WritePendingRelease(socket string, r PendingRelease) error {
	dir := PendingDir(socket)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("record the release for wirelaced: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("record the release for wirelaced: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("record the release for wirelaced: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("record the release for wirelaced: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, r.name())); err != nil {
		return fmt.Errorf("record the release for wirelaced: %w", err)
	}
	return nil
}

// PendingFile is a pending release as read from its file.
type PendingFile struct {
	Path string
	PendingRelease
}

// ReadPendingReleases returns the releases waiting for the daemon at
// socket. A file that does not decode is returned in bad, to be reported
// and removed; temporary files of a writer in progress are skipped.
func ReadPendingReleases(socket string) (ok []PendingFile, bad []string, err error) {
	dir := PendingDir(socket)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, nil, fmt.Errorf("read %s: %w", path, err)
		}
		var r PendingRelease
		if json.Unmarshal(b, &r) != nil || r.ContainerID == "" || r.IfName == "" || r.IPAM == r.Chained {
			bad = append(bad, path)
			continue
		}
		ok = append(ok, PendingFile{Path: path, PendingRelease: r})
	}
	return ok, bad, nil
}

// ReleaseOrRecord carries out r through the daemon, or, when the daemon
// does not answer, records it as a pending release for the daemon to carry
// out when it is back; deferred says which. Either way the release is
// durable when err is nil, so a CNI DEL can succeed.
func (c *Client) ReleaseOrRecord(ctx context.Context, r PendingRelease) (deferred bool, err error) {
	if r.Chained {
		err = c.ReleaseChained(ctx, r.Network, r.AttachmentKey)
	} else {
		err = c.Release(ctx, r.AttachmentKey)
	}
	var apiErr *APIError
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
		return false, nil // the contract says release succeeds; a 404 means the same
	case !errors.Is(err, ErrUnavailable):
		return false, err
	}
	if werr := WritePendingRelease(c.socket, r); werr != nil {
		return false, fmt.Errorf("%w (and recording the release for later failed: %v)", err, werr)
	}
	return true, nil
}
