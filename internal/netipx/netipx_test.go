package netipx

import (
	"net/netip"
	"testing"
)

func TestUnmapAddrPort(t *testing.T) {
	for in, want := range map[string]string{
		"[::ffff:192.0.2.1]:51820": "192.0.2.1:51820",
		"192.0.2.1:51820":          "192.0.2.1:51820",
		"[2001:db8::1]:443":        "[2001:db8::1]:443",
	} {
		if got := UnmapAddrPort(netip.MustParseAddrPort(in)); got != netip.MustParseAddrPort(want) {
			t.Errorf("UnmapAddrPort(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.244.1.0/24":      "10.244.1.255",
		"10.244.1.7/32":      "10.244.1.7",
		"fd00:10:244:1::/64": "fd00:10:244:1:ffff:ffff:ffff:ffff",
	} {
		if got := LastAddr(netip.MustParsePrefix(in)); got != netip.MustParseAddr(want) {
			t.Errorf("LastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
