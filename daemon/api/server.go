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
	"time"

	"github.com/wirelace/wirelace/netconf"
)

// Backend answers the API's questions; the daemon implements it.
type Backend interface {
	Status() netconf.Status
	Allocate(ctx context.Context, r netconf.AllocateRequest) (netconf.AllocateResponse, error)
	Release(ctx context.Context, key netconf.AttachmentKey) error
	GC(ctx context.Context, valid []netconf.AttachmentKey) (netconf.GCResponse, error)
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
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+netconf.StatusPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status())
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
		resp, err := b.GC(r.Context(), req.Valid)
		reply(w, resp, err)
	})
	mux.HandleFunc("GET "+netconf.IPAMListPath, func(w http.ResponseWriter, r *http.Request) {
		resp, err := b.Allocations()
		reply(w, resp, err)
	})
	mux.HandleFunc("POST "+netconf.ChainedRegisterPath, func(w http.ResponseWriter, r *http.Request) {
		var req netconf.RegisterRequest
		if !decode(w, r, &req) || !validKey(w, req.AttachmentKey) {
			return
		}
		resp, err := b.Register(r.Context(), req)
		reply(w, resp, err)
	})
	mux.HandleFunc("POST "+netconf.ChainedReleasePath, func(w http.ResponseWriter, r *http.Request) {
		var req netconf.ChainedReleaseRequest
		if !decode(w, r, &req) || !validKey(w, req.AttachmentKey) {
			return
		}
		reply(w, struct{}{}, b.ReleaseChained(r.Context(), req))
	})
	mux.HandleFunc("POST "+netconf.ChainedGCPath, func(w http.ResponseWriter, r *http.Request) {
		var req netconf.ChainedGCRequest
		if !decode(w, r, &req) {
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

func decode(w http.ResponseWriter, r *http.Request, into any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		writeJSON(w, http.StatusBadRequest, netconf.Error{Error: "bad request body: " + err.Error()})
		return false
	}
	return true
}

func validKey(w http.ResponseWriter, k netconf.AttachmentKey) bool {
	if k.ContainerID == "" || k.IfName == "" {
		writeJSON(w, http.StatusBadRequest, netconf.Error{Error: "containerID and ifName are required"})
		return false
	}
	return true
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
