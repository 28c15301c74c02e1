package netconf

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReleaseOrRecord(t *testing.T) {
	dir, err := os.MkdirTemp("", "wlpend") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "wirelaced.sock")
	c := NewClient(socket)
	r := PendingRelease{Chained: true, Network: "cilium", AttachmentKey: AttachmentKey{ContainerID: "c1", IfName: "eth0"}}

	deferred, err := c.ReleaseOrRecord(context.Background(), r)
	if err != nil || !deferred {
		t.Fatalf("daemon down: deferred=%v err=%v, want a recorded release", deferred, err)
	}
	// A repeated DEL records the same release once.
	if _, err := c.ReleaseOrRecord(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	other := PendingRelease{IPAM: true, AttachmentKey: r.AttachmentKey}
	if _, err := c.ReleaseOrRecord(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	// Garbage, and a writer's temporary file, in the directory.
	os.WriteFile(filepath.Join(PendingDir(socket), "junk.json"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(PendingDir(socket), ".tmp-123"), []byte("{}"), 0o600)

	ok, bad, err := ReadPendingReleases(socket)
	if err != nil {
		t.Fatal(err)
	}
	if len(ok) != 2 || len(bad) != 1 || !strings.HasSuffix(bad[0], "junk.json") {
		t.Fatalf("ok %+v bad %v, want the two releases and the junk file", ok, bad)
	}
	for _, f := range ok {
		if f.AttachmentKey != r.AttachmentKey || (f.Chained && f.Network != "cilium") {
			t.Errorf("read back %+v", f)
		}
	}
	// What the daemon-down error says must not read as "already gone" to
	// containerd's go-cni.
	_, err = c.Status(context.Background())
	for _, phrase := range []string{"no such file or directory", "not found"} {
		if err == nil || strings.Contains(err.Error(), phrase) {
			t.Errorf("daemon-down error %v contains %q", err, phrase)
		}
	}
}
