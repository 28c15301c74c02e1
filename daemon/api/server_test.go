package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wirelace/wirelace/netconf"
)

// backend records what reached it; every call succeeds.
type backend struct{ allocated []netconf.AllocateRequest }

func (b *backend) Status(bool) netconf.Status { return netconf.Status{Ready: true} }
func (b *backend) Allocate(_ context.Context, r netconf.AllocateRequest) (netconf.AllocateResponse, error) {
	b.allocated = append(b.allocated, r)
	return netconf.AllocateResponse{MTU: 1420}, nil
}
func (b *backend) Release(context.Context, netconf.AttachmentKey) error { return nil }
func (b *backend) GC(context.Context, netconf.GCRequest) (netconf.GCResponse, error) {
	return netconf.GCResponse{}, nil
}
func (b *backend) Allocations() (netconf.ListResponse, error) { return netconf.ListResponse{}, nil }
func (b *backend) Register(context.Context, netconf.RegisterRequest) (netconf.RegisterResponse, error) {
	return netconf.RegisterResponse{MTU: 1420}, nil
}
func (b *backend) ReleaseChained(context.Context, netconf.ChainedReleaseRequest) error { return nil }
func (b *backend) GCChained(context.Context, netconf.ChainedGCRequest) (netconf.GCResponse, error) {
	return netconf.GCResponse{}, nil
}
func (b *backend) Registrations() (netconf.ChainedListResponse, error) {
	return netconf.ChainedListResponse{}, nil
}

func serve(t *testing.T) (*backend, string, *http.Client) {
	t.Helper()
	dir, err := os.MkdirTemp("", "wlapi") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	b := &backend{}
	srv, err := Listen(path, b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	return b, path, c
}

func TestSocketIsRootOnly(t *testing.T) {
	_, path, _ := serve(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("socket mode %o, want 600", perm)
	}
}

// Keys name database entries and files: the local API refuses what the
// CNI spec does not allow, and never echoes a huge ID back.
func TestLocalAPIValidatesInput(t *testing.T) {
	b, _, c := serve(t)
	post := func(path string, body any) (int, string) {
		t.Helper()
		raw, _ := json.Marshal(body)
		resp, err := c.Post("http://wirelaced"+path, "application/json", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	huge := strings.Repeat("a", 40000)
	for _, tc := range []struct {
		name string
		key  netconf.AttachmentKey
	}{
		{"path traversal", netconf.AttachmentKey{ContainerID: "../../../etc/passwd", IfName: "eth0"}},
		{"newline", netconf.AttachmentKey{ContainerID: "abc\ndef", IfName: "eth0"}},
		{"NUL", netconf.AttachmentKey{ContainerID: "abc\x00", IfName: "eth0"}},
		{"huge", netconf.AttachmentKey{ContainerID: huge, IfName: "eth0"}},
		{"ifName ..", netconf.AttachmentKey{ContainerID: "abc", IfName: ".."}},
		{"ifName slash", netconf.AttachmentKey{ContainerID: "abc", IfName: "a/b"}},
		{"ifName too long", netconf.AttachmentKey{ContainerID: "abc", IfName: "abcdefghijklmnop"}},
		{"empty", netconf.AttachmentKey{}},
	} {
		code, body := post(netconf.IPAMAllocatePath, netconf.AllocateRequest{AttachmentKey: tc.key})
		if code != http.StatusBadRequest || len(body) > 400 {
			t.Errorf("%s: %d %q, want 400 with a short message", tc.name, code, body)
		}
	}
	code, body := post(netconf.ChainedRegisterPath, netconf.RegisterRequest{Network: "a b", AttachmentKey: netconf.AttachmentKey{ContainerID: "abc", IfName: "eth0"}})
	if code != http.StatusBadRequest || !strings.Contains(body, "network") {
		t.Errorf("bad network name: %d %s", code, body)
	}
	if len(b.allocated) != 0 {
		t.Fatalf("invalid requests reached the backend: %+v", b.allocated)
	}
	// A field this daemon does not know (a newer plugin during a rolling
	// upgrade) is accepted.
	code, body = post(netconf.IPAMAllocatePath, map[string]any{"containerID": "abc-1", "ifName": "eth0", "network": "n", "someFutureField": 1})
	if code != http.StatusOK || len(b.allocated) != 1 {
		t.Fatalf("request with an unknown field: %d %s", code, body)
	}
}
