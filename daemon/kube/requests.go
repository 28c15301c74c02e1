package kube

import (
	"net/http"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Requests counts the daemon's requests to the API server by verb and
// resource, so an operator (and the scale benchmark) can see what a node
// costs the control plane: in a quiet cluster, one Lease update per
// heartbeat and nothing else.
type Requests struct {
	mu     sync.Mutex
	counts map[requestKey]uint64
}

type requestKey struct{ verb, resource string }

func newRequests() *Requests { return &Requests{counts: map[requestKey]uint64{}} }

// wrap counts every request rt makes.
func (r *Requests) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		verb, resource := classify(req)
		r.mu.Lock()
		r.counts[requestKey{verb, resource}]++
		r.mu.Unlock()
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

var descRequests = prometheus.NewDesc("wirelace_api_requests_total",
	"Requests this daemon made to the Kubernetes API server, by verb and resource.", []string{"verb", "resource"}, nil)

// Describe and Collect make Requests a Prometheus collector.
func (r *Requests) Describe(ch chan<- *prometheus.Desc) { ch <- descRequests }

func (r *Requests) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, n := range r.counts {
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), k.verb, k.resource)
	}
}
