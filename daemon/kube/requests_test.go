package kube

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct{ method, url, verb, resource string }{
		{"GET", "/api/v1/nodes/n1", "get", "nodes"},
		{"GET", "/api/v1/nodes?limit=500", "list", "nodes"},
		{"GET", "/api/v1/nodes?watch=true&resourceVersion=5", "watch", "nodes"},
		{"PUT", "/apis/coordination.k8s.io/v1/namespaces/wirelace-system/leases/n1", "update", "leases"},
		{"POST", "/apis/coordination.k8s.io/v1/namespaces/wirelace-system/leases", "create", "leases"},
		{"PATCH", "/apis/wirelace.io/v1alpha1/meshnodes/n1?fieldManager=wirelaced", "patch", "meshnodes"},
		{"DELETE", "/apis/wirelace.io/v1alpha1/ipclaims/10.77.0.1-32", "delete", "ipclaims"},
		{"GET", "/api/v1/namespaces/default/pods?watch=1", "watch", "pods"},
		{"GET", "/version", "get", "other"},
	} {
		req := httptest.NewRequest(c.method, c.url, nil)
		if verb, res := classify(req); verb != c.verb || res != c.resource {
			t.Errorf("%s %s: %s %s, want %s %s", c.method, c.url, verb, res, c.verb, c.resource)
		}
	}
}

func TestRequestsCountsWhatGoesThrough(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	r := newRequests()
	c := &http.Client{Transport: r.wrap(http.DefaultTransport)}
	for _, u := range []string{"/api/v1/nodes/a", "/api/v1/nodes/b", "/api/v1/nodes"} {
		resp, err := c.Get(srv.URL + u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := `
# HELP wirelace_api_requests_total Requests this daemon made to the Kubernetes API server, by verb and resource.
# TYPE wirelace_api_requests_total counter
wirelace_api_requests_total{resource="nodes",verb="get"} 2
wirelace_api_requests_total{resource="nodes",verb="list"} 1
`
	if err := testutil.CollectAndCompare(r, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
