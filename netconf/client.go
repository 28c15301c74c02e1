package netconf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// ErrUnavailable means the daemon did not answer at all: the caller may try
// again later (CNI error code 11).
var ErrUnavailable = errors.New("wirelaced unavailable")

// APIError is an answer of the daemon that refused a request.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return "wirelaced: " + e.Message }

// Client talks to wirelaced's local API over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the daemon socket at path.
func NewClient(path string) *Client {
	return &Client{
		socket: path,
		http: &http.Client{
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", path)
				},
			},
			Timeout: 10 * time.Second,
		},
	}
}

// Status fetches the daemon's status, with every peer as the device sees it.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.get(ctx, StatusPath, &s)
}

// Readiness fetches the daemon's status without its peers: readiness and
// the MTU at a cost that does not grow with the mesh (the plugins' calls).
func (c *Client) Readiness(ctx context.Context) (Status, error) {
	var s Status
	return s, c.get(ctx, StatusPath+"?"+NoPeersQuery, &s)
}

// Allocate gets (or re-gets) the addresses of one attachment.
func (c *Client) Allocate(ctx context.Context, r AllocateRequest) (AllocateResponse, error) {
	var out AllocateResponse
	return out, c.do(ctx, http.MethodPost, IPAMAllocatePath, r, &out)
}

// Release frees one attachment's addresses; it succeeds if there are none.
func (c *Client) Release(ctx context.Context, key AttachmentKey) error {
	return c.do(ctx, http.MethodPost, IPAMReleasePath, ReleaseRequest{AttachmentKey: key}, nil)
}

// GC releases every allocation of network not in valid.
func (c *Client) GC(ctx context.Context, network string, valid []AttachmentKey) (GCResponse, error) {
	var out GCResponse
	return out, c.do(ctx, http.MethodPost, IPAMGCPath, GCRequest{Network: network, Valid: valid}, &out)
}

// Register registers a chained attachment's addresses.
func (c *Client) Register(ctx context.Context, r RegisterRequest) (RegisterResponse, error) {
	var out RegisterResponse
	return out, c.do(ctx, http.MethodPost, ChainedRegisterPath, r, &out)
}

// ReleaseChained ends a chained registration; it succeeds if there is none.
func (c *Client) ReleaseChained(ctx context.Context, network string, key AttachmentKey) error {
	return c.do(ctx, http.MethodPost, ChainedReleasePath, ChainedReleaseRequest{Network: network, AttachmentKey: key}, nil)
}

// GCChained releases every registration of network not in valid.
func (c *Client) GCChained(ctx context.Context, network string, valid []AttachmentKey) (GCResponse, error) {
	var out GCResponse
	return out, c.do(ctx, http.MethodPost, ChainedGCPath, ChainedGCRequest{Network: network, Valid: valid}, &out)
}

// Registrations lists the chained registrations on the node.
func (c *Client) Registrations(ctx context.Context) (ChainedListResponse, error) {
	var out ChainedListResponse
	return out, c.get(ctx, ChainedListPath, &out)
}

// Allocations lists every allocation on the node.
func (c *Client) Allocations(ctx context.Context) (ListResponse, error) {
	var out ListResponse
	return out, c.get(ctx, IPAMListPath, &out)
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// do sends body (if any) as JSON and decodes the answer into out (if any).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s request: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://wirelaced"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.unavailable(err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		apiErr := &APIError{Status: resp.StatusCode, Message: resp.Status}
		var e Error
		if json.Unmarshal(respBody, &e) == nil && e.Error != "" {
			apiErr.Message = e.Error
		}
		return apiErr
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(respBody, out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return nil
}

// unavailable describes a daemon that did not answer. The socket error
// itself ("connect: no such file or directory") is left out on purpose:
// containerd's go-cni treats a DEL error containing "no such file or
// directory" or "not found" as success and never retries it, and a daemon
// that is down is exactly the case that must be retried.
func (c *Client) unavailable(err error) error {
	reason := "daemon not running (nothing listens on " + c.socket + ")"
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		reason = "daemon not answering on " + c.socket + " in time"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		reason = "permission denied on " + c.socket + " (the plugins must run as root)"
	}
	return fmt.Errorf("%w: %s; is the wirelace DaemonSet pod running on this node?", ErrUnavailable, reason)
}
