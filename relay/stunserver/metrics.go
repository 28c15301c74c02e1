package stunserver

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a STUN request, the label of the requests metric.
const (
	resultOK          = "ok"
	resultChanged     = "changed_address"
	resultUnknownAttr = "unknown_attribute"
	resultBadRequest  = "bad_request"
	resultIgnored     = "ignored"
)

type metrics struct {
	requests *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wirelace", Subsystem: "stun", Name: "requests_total",
			Help: "STUN messages received, by outcome: ok, changed_address (answered from another address on CHANGE-REQUEST), unknown_attribute, bad_request, ignored (not a Binding request).",
		}, []string{"result"}),
	}
	for _, r := range []string{resultOK, resultChanged, resultUnknownAttr, resultBadRequest, resultIgnored} {
		m.requests.WithLabelValues(r)
	}
	if reg != nil {
		if err := reg.Register(m.requests); err != nil {
			return nil, fmt.Errorf("register STUN metrics: %w", err)
		}
	}
	return m, nil
}
