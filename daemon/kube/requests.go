package kube

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Requests counts the daemon's requests to the API server by verb and
// resource, so an operator (and the scale benchmark) can see what a node
// costs the control plane: in a quiet cluster, one Lease update per
// heartbeat and nothing else. It is a Prometheus collector.
type Requests struct {
	*prometheus.CounterVec
}

func newRequests() *Requests {
	return &Requests{prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wirelace_api_requests_total",
		Help: "Requests this daemon made to the Kubernetes API server, by verb and resource.",
	}, []string{"verb", "resource"})}
}

// wrap counts every request rt makes.
func (r *Requests) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		r.WithLabelValues(classify(req)).Inc()
		return rt.RoundTrip(req)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// classify names a request as the API server's audit log would: the verb
// (get, list, watch, create, update, patch, delete) and the resource.
func classify(req *http.Request) (verb, resource string) {
	// /api/v1/[namespaces/NS/]RESOURCE[/NAME[/SUB]] or
	// /apis/GROUP/VERSION/[namespaces/NS/]RESOURCE[/NAME[/SUB]]
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return strings.ToLower(req.Method), "other"
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	if len(parts) == 0 {
		return strings.ToLower(req.Method), "other"
	}
	resource = parts[0]
	named := len(parts) >= 2
	switch req.Method {
	case http.MethodGet:
		switch {
		case req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1":
			return "watch", resource
		case named:
			return "get", resource
		default:
			return "list", resource
		}
	case http.MethodPost:
		return "create", resource
	case http.MethodPut:
		return "update", resource
	case http.MethodPatch:
		return "patch", resource
	case http.MethodDelete:
		return "delete", resource
	}
	return strings.ToLower(req.Method), resource
}
