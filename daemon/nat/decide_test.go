package nat

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/wirelace/wirelace/api/vocab"
)

var (
	srvA  = netip.MustParseAddrPort("198.18.0.2:3478")
	srvA2 = netip.MustParseAddrPort("198.18.0.2:3479") // srvA's other port
	srvB  = netip.MustParseAddrPort("198.18.0.3:3478")
	srvB2 = netip.MustParseAddrPort("198.18.0.4:3479") // an OTHER-ADDRESS
	srv6  = netip.MustParseAddrPort("[2001:db8::2]:3478")

	pub      = netip.MustParseAddrPort("203.0.113.5:40123")
	pubOther = netip.MustParseAddrPort("203.0.113.5:51000")
	pub6     = netip.MustParseAddrPort("[2001:db8:1::5]:51820")
	lan      = netip.MustParseAddr("192.168.1.10")
)

// TestVerdict covers every pair of CHANGE-REQUEST outcomes.
func TestVerdict(t *testing.T) {
	all := []outcome{notRun, unsupported, silent, answered, confounded}
	noInfo := func(o outcome) bool { return o == notRun || o == unsupported || o == confounded }
	for _, both := range all {
		for _, port := range all {
			var want filtering
			var exact bool
			switch {
			case both == answered:
				want, exact = endpointIndependent, true
			case both == silent && port == answered:
				want, exact = addressDependent, true
			case port == silent:
				want, exact = addressAndPortDependent, true
			case both == silent && noInfo(port):
				want, exact = addressAndPortDependent, false
			case noInfo(both) && port == answered:
				want, exact = addressDependent, false
			case noInfo(both) && noInfo(port):
				want, exact = filterUnknown, false
			default:
				t.Fatalf("table misses both=%v port=%v", both, port)
			}
			got, gotExact := filterTest{server: srvA, both: both, portOnly: port}.verdict()
			if got != want || gotExact != exact {
				t.Errorf("both=%v port=%v: verdict = %v exact=%v, want %v exact=%v", both, port, got, gotExact, want, exact)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	two := []netip.AddrPort{srvA, srvB}
	same := []binding{{srvA, pub}, {srvB, pub}}
	ft := func(both, port outcome) []filterTest { return []filterTest{{server: srvA, both: both, portOnly: port}} }

	cases := []struct {
		name            string
		obs             observations
		want            vocab.NATType
		mapped          []netip.AddrPort
		independent     bool
		filteringTested bool
		reason          []string // substrings
	}{
		{
			name:   "no answer",
			obs:    observations{servers: two},
			want:   vocab.NATUDPBlocked,
			reason: []string{"no STUN answer from 198.18.0.2:3478, 198.18.0.3:3478"},
		},
		{
			name:        "open",
			obs:         observations{servers: two, bindings: []binding{{srvA, pub}, {srvB, pub}}, local: []netip.Addr{lan, pub.Addr()}},
			want:        vocab.NATOpen,
			mapped:      []netip.AddrPort{pub},
			independent: true,
			reason:      []string{"203.0.113.5:40123 is a local address"},
		},
		{
			name:        "open with one server",
			obs:         observations{servers: []netip.AddrPort{srvA}, bindings: []binding{{srvA, pub}}, local: []netip.Addr{pub.Addr()}},
			want:        vocab.NATOpen,
			mapped:      []netip.AddrPort{pub},
			independent: false,
		},
		{
			name:            "open behind a firewall",
			obs:             observations{servers: two, bindings: same, filters: ft(silent, silent), local: []netip.Addr{pub.Addr()}},
			want:            vocab.NATOpen,
			mapped:          []netip.AddrPort{pub},
			independent:     true,
			filteringTested: true,
			reason:          []string{"no NAT", "address-and-port-dependent filtering"},
		},
		{
			name: "local IPv4-mapped local address",
			obs: observations{servers: two, bindings: same,
				local: []netip.Addr{netip.AddrFrom16(pub.Addr().As16())}},
			want: vocab.NATOpen, mapped: []netip.AddrPort{pub}, independent: true,
		},
		{
			name:            "full cone",
			obs:             observations{servers: two, bindings: same, filters: ft(answered, answered), local: []netip.Addr{lan}},
			want:            vocab.NATCone,
			mapped:          []netip.AddrPort{pub},
			independent:     true,
			filteringTested: true,
			reason:          []string{"mapped 203.0.113.5:40123 for 198.18.0.2 and 198.18.0.3: endpoint-independent mapping", "endpoint-independent filtering"},
		},
		{
			name:            "restricted cone",
			obs:             observations{servers: two, bindings: same, filters: ft(silent, answered)},
			want:            vocab.NATConeRestricted,
			mapped:          []netip.AddrPort{pub},
			independent:     true,
			filteringTested: true,
			reason:          []string{"other IP and port dropped, from other port arrived: address-dependent filtering"},
		},
		{
			name:            "port-restricted cone",
			obs:             observations{servers: two, bindings: same, filters: ft(silent, silent)},
			want:            vocab.NATConePortRestricted,
			mapped:          []netip.AddrPort{pub},
			independent:     true,
			filteringTested: true,
			reason:          []string{"address-and-port-dependent filtering"},
		},
		{
			name: "restricted cone assumed when the other-IP answer is no evidence",
			obs: observations{servers: two, bindings: []binding{{srvA, pub}, {srvB2, pub}},
				filters: ft(confounded, answered)},
			want:            vocab.NATConeRestricted,
			mapped:          []netip.AddrPort{pub},
			independent:     true,
			filteringTested: true,
			reason:          []string{"address-dependent filtering (assumed; the NAT may be less strict)"},
		},
		{
			name:            "port-restricted assumed when the server cannot change port",
			obs:             observations{servers: two, bindings: same, filters: ft(silent, notRun)},
			want:            vocab.NATConePortRestricted,
			mapped:          []netip.AddrPort{pub},
			independent:     true,
			filteringTested: true,
			reason:          []string{"(assumed"},
		},
		{
			name: "an exact filtering test wins over an earlier inexact one",
			obs: observations{servers: two, bindings: same, filters: []filterTest{
				{server: srvA, both: confounded, portOnly: answered},
				{server: srvB, both: answered, portOnly: answered},
			}},
			want: vocab.NATCone, mapped: []netip.AddrPort{pub}, independent: true, filteringTested: true,
			reason: []string{"via 198.18.0.3:3478"},
		},
		{
			name:        "mapping independent, no RFC 5780",
			obs:         observations{servers: two, bindings: same},
			want:        vocab.NATUnknown,
			mapped:      []netip.AddrPort{pub},
			independent: true,
			reason:      []string{"endpoint-independent mapping", "no server supports RFC 5780"},
		},
		{
			name:        "mapping independent, RFC 5780 tests inconclusive",
			obs:         observations{servers: two, bindings: same, filters: ft(unsupported, confounded)},
			want:        vocab.NATUnknown,
			mapped:      []netip.AddrPort{pub},
			independent: true,
			reason:      []string{"filtering untested"},
		},
		{
			name:   "symmetric",
			obs:    observations{servers: two, bindings: []binding{{srvA, pub}, {srvB, pubOther}}, filters: ft(silent, silent)},
			want:   vocab.NATSymmetric,
			mapped: []netip.AddrPort{pub, pubOther},
			// Filtering was tested, even if a symmetric NAT makes it moot.
			filteringTested: true,
			reason:          []string{"mapped 203.0.113.5:40123 for 198.18.0.2:3478 but 203.0.113.5:51000 for 198.18.0.3:3478: endpoint-dependent mapping"},
		},
		{
			name:   "symmetric by port alone, same server IP",
			obs:    observations{servers: []netip.AddrPort{srvA, srvA2}, bindings: []binding{{srvA, pub}, {srvA2, pubOther}}},
			want:   vocab.NATSymmetric,
			mapped: []netip.AddrPort{pub, pubOther},
		},
		{
			name:   "symmetric seen through OTHER-ADDRESS",
			obs:    observations{servers: []netip.AddrPort{srvA}, bindings: []binding{{srvA, pub}, {srvB2, pubOther}}},
			want:   vocab.NATSymmetric,
			mapped: []netip.AddrPort{pub, pubOther},
		},
		{
			name:   "a mapped address that is local for one server only is not open",
			obs:    observations{servers: two, bindings: []binding{{srvA, netip.AddrPortFrom(lan, 51820)}, {srvB, pub}}, local: []netip.Addr{lan}},
			want:   vocab.NATSymmetric,
			mapped: []netip.AddrPort{netip.AddrPortFrom(lan, 51820), pub},
		},
		{
			name:   "only one server answered",
			obs:    observations{servers: two, bindings: []binding{{srvB, pub}}},
			want:   vocab.NATUnknown,
			mapped: []netip.AddrPort{pub},
			reason: []string{"only servers at 198.18.0.3 answered"},
		},
		{
			name:   "two ports of one server IP",
			obs:    observations{servers: []netip.AddrPort{srvA, srvA2}, bindings: []binding{{srvA, pub}, {srvA2, pub}}},
			want:   vocab.NATUnknown,
			mapped: []netip.AddrPort{pub},
			reason: []string{"needs two server IPs"},
		},
		{
			name:            "one server IP, filtering tested",
			obs:             observations{servers: []netip.AddrPort{srvA}, bindings: []binding{{srvA, pub}}, filters: ft(unsupported, silent)},
			want:            vocab.NATUnknown,
			mapped:          []netip.AddrPort{pub},
			filteringTested: true,
			reason:          []string{"needs two server IPs", "address-and-port-dependent filtering"},
		},
		{
			name: "other family ignored for the decision but listed",
			obs: observations{servers: []netip.AddrPort{srvA, srv6, srvB},
				bindings: []binding{{srvA, pub}, {srv6, pub6}, {srvB, pub}}, filters: ft(silent, silent)},
			want:            vocab.NATConePortRestricted,
			mapped:          []netip.AddrPort{pub, pub6},
			independent:     true,
			filteringTested: true,
		},
		{
			name:   "IPv6 first: open without NAT66",
			obs:    observations{servers: []netip.AddrPort{srv6, srvA}, bindings: []binding{{srv6, pub6}, {srvA, pub}}, local: []netip.Addr{pub6.Addr(), lan}},
			want:   vocab.NATOpen,
			mapped: []netip.AddrPort{pub6, pub},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.obs)
			if got.Type != tc.want {
				t.Errorf("Type = %q, want %q (reason: %s)", got.Type, tc.want, got.Reason)
			}
			if fmt.Sprint(got.Mapped) != fmt.Sprint(tc.mapped) {
				t.Errorf("Mapped = %v, want %v", got.Mapped, tc.mapped)
			}
			if got.MappingIndependent != tc.independent {
				t.Errorf("MappingIndependent = %v, want %v", got.MappingIndependent, tc.independent)
			}
			if got.FilteringTested != tc.filteringTested {
				t.Errorf("FilteringTested = %v, want %v", got.FilteringTested, tc.filteringTested)
			}
			if got.Reason == "" || strings.Contains(got.Reason, "\n") {
				t.Errorf("Reason %q is not one line", got.Reason)
			}
			for _, s := range tc.reason {
				if !strings.Contains(got.Reason, s) {
					t.Errorf("Reason %q lacks %q", got.Reason, s)
				}
			}
		})
	}
}
