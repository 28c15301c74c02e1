// Package api serves wirelaced's local HTTP/JSON API on a unix socket that
// only root can open. The types of the contract live in netconf.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/utils"

	"github.com/wirelace/wirelace/netconf"
)

// Backend answers the API's questions; the daemon implements it.
type Backend interface {
	// Status is the daemon's status; peers says whether to list every
	// peer (costly with a large mesh: the plugins do without).
	Status(peers bool) netconf.Status
	Allocate(ctx context.Context, r netconf.AllocateRequest) (netconf.AllocateResponse, error)
	Release(ctx context.Context, key netconf.AttachmentKey) error
	GC(ctx context.Context, r netconf.GCRequest) (netconf.GCResponse, error)
	Allocations() (netconf.ListResponse, error)

	// Chained mode (see netconf/chained.go).
	Register(ctx context.Context, r netconf.RegisterRequest) (netconf.RegisterResponse, error)
	ReleaseChained(ctx context.Context, r netconf.ChainedReleaseRequest) error
	GCChained(ctx context.Context, r netconf.ChainedGCRequest) (netconf.GCResponse, error)
	Registrations() (netconf.ChainedListResponse, error)
}

// Errors a Backend wraps to choose the HTTP status: ErrNotReady (503, the
// plugins' "try again later") and ErrInvalid (400). Anything else is 500.
var (
	ErrNotReady = errors.New("not ready")
	ErrInvalid  = errors.New("invalid request")
)

// Server is the local API server.
type Server struct {
	ln   net.Listener
	http *http.Server
	path string
}

// Listen creates the socket at path. A stale socket left by a crashed daemon
// is replaced; a live one (another daemon answering) is an error, since two
// daemons on one node would fight over the device.
func Listen(path string, b Backend, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s is served by another running wirelaced; stop it first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	// The socket is created 0600 from the start (umask), not chmod'ed after
	// listen: in between, any local user could connect and be served.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+netconf.StatusPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status(r.URL.Query().Get("peers") != "false"))
	})
	mux.HandleFunc("POST "+netconf.IPAMAllocatePath, func(w http.ResponseWriter, r *http.Request) {
		var req netconf.AllocateRequest
		if !decode(w, r, &req) || !validKey(w, req.AttachmentKey) {
			return
		}
		resp, err := b.Allocate(r.Context(), req)
		reply(w, resp, err)
	})
	mux.HandleFunc("POST "+netconf.IPAMReleasePath, func(w http.ResponseWriter, r *http.Request) {
		var req netconf.ReleaseRequest
		if !decode(w, r, &req) || !validKey(w, req.AttachmentKey) {
			return
		}
		reply(w, struct{}{}, b.Release(r.Context(), req.AttachmentKey))
	})
	mux.HandleFunc("POST "+netconf.IPAMGCPath, func(w http.ResponseWriter, r *http.Request) {
		var req netconf.GCRequest
		if !decode(w, r, &req) {
			return
		}
		resp, err := b.GC(r.Context(), req)
		reply(w, resp, err)
	})
	mux.HandleFunc("GET "+netconf.IPAMListPath, func(w http.ResponseWriter, r *http.Request) {
		resp, err := b.Allocations()
		reply(w, resp, err)
	})
	mux.HandleFunc("POST "+netconf.ChainedRegisterPath, func(w http.ResponseWriter, r *http.Request) {
		var req netconf.RegisterRequest
		if !decode(w, r, &req) || !validKey(w, req.AttachmentKey) || !validNetwork(w, req.Network) {
			return
		}
		resp, err := b.Register(r.Context(), req)
		reply(w, resp, err)
	})
	mux.HandleFunc("POST "+netconf.ChainedReleasePath, func(w http.ResponseWriter, r *http.Request) {
		var req netconf.ChainedReleaseRequest
		if !decode(w, r, &req) || !validKey(w, req.AttachmentKey) || !validNetwork(w, req.Network) {
			return
		}
		reply(w, struct{}{}, b.ReleaseChained(r.Context(), req))
	})
	mux.HandleFunc("POST "+netconf.ChainedGCPath, func(w http.ResponseWriter, r *http.Request) {
		var req netconf.ChainedGCRequest
		if !decode(w, r, &req) || !validNetwork(w, req.Network) {
			return
		}
		resp, err := b.GCChained(r.Context(), req)
		reply(w, resp, err)
	})
	mux.HandleFunc("GET "+netconf.ChainedListPath, func(w http.ResponseWriter, r *http.Request) {
		resp, err := b.Registrations()
		reply(w, resp, err)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, netconf.Error{Error: fmt.Sprintf("no such endpoint %s %s", r.Method, r.URL.Path)})
	})
	s := &Server{
		ln:   ln,
		path: path,
		http: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
	return s, nil
}

// Serve answers requests until Shutdown.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("local API: %w", err)
	}
	return nil
}

// Shutdown stops the server, letting requests in flight finish, and removes
// the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	os.Remove(s.path)
	return err
}

// maxBody bounds request bodies; the largest is a GC list of attachments.
const maxBody = 4 << 20

// decode reads a request body. Unknown fields are accepted: during a
// rolling upgrade plugins one version newer than the daemon send fields it
// does not know yet, and must still be served.
func decode(w http.ResponseWriter, r *http.Request, into any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(into); err != nil {
		writeJSON(w, http.StatusBadRequest, netconf.Error{Error: "bad request body: " + truncate(err.Error())})
		return false
	}
	return true
}

// maxIDLen bounds container IDs (runtimes use 64 hex digits), so that a
// bad one is neither stored nor echoed whole.
const maxIDLen = 256

// validKey checks an attachment key as the CNI spec does its parts: a
// container ID of letters, digits, '_', '.', '-'; an interface name a
// kernel would take. The key names files and database entries, so nothing
// else may get in (no "../", newline or NUL).
func validKey(w http.ResponseWriter, k netconf.AttachmentKey) bool {
	var msg string
	switch {
	case len(k.ContainerID) > maxIDLen:
		msg = fmt.Sprintf("containerID is %d characters long; at most %d", len(k.ContainerID), maxIDLen)
	case utils.ValidateContainerID(k.ContainerID) != nil:
		msg = "containerID must be letters, digits, '_', '.' or '-', starting with a letter or digit"
	case utils.ValidateInterfaceName(k.IfName) != nil:
		msg = "ifName must be a valid interface name: 1 to 15 characters, not . or .., without '/', ':' or white space"
	default:
		return true
	}
	writeJSON(w, http.StatusBadRequest, netconf.Error{Error: msg})
	return false
}

// validNetwork checks a CNI network name as the spec does.
func validNetwork(w http.ResponseWriter, name string) bool {
	if len(name) <= maxIDLen && utils.ValidateNetworkName(name) == nil {
		return true
	}
	writeJSON(w, http.StatusBadRequest, netconf.Error{Error: "network must be a CNI network name: letters, digits, '_', '.' or '-', starting with a letter or digit"})
	return false
}

// truncate keeps error text that may quote the request short.
func truncate(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// reply writes v, or err with the status its kind calls for.
func reply(w http.ResponseWriter, v any, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, ErrNotReady):
		writeJSON(w, http.StatusServiceUnavailable, netconf.Error{Error: err.Error()})
	case errors.Is(err, ErrInvalid):
		writeJSON(w, http.StatusBadRequest, netconf.Error{Error: err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, netconf.Error{Error: err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
