package ipam

import (
	"net/netip"
	"testing"
)

func TestUsable(t *testing.T) {
	for _, tt := range []struct {
		r, gw, first, last string
	}{
		{"10.244.1.0/24", "10.244.1.1", "10.244.1.2", "10.244.1.254"},
		{"10.244.1.5/24", "10.244.1.1", "10.244.1.2", "10.244.1.254"},
		{"10.0.0.8/29", "10.0.0.9", "10.0.0.10", "10.0.0.14"},
		{"10.0.0.0/30", "10.0.0.1", "10.0.0.2", "10.0.0.2"},
		{"10.96.0.0/12", "10.96.0.1", "10.96.0.2", "10.111.255.254"},
		{"fd00:10:244:1::/64", "fd00:10:244:1::1", "fd00:10:244:1::2", "fd00:10:244:1:ffff:ffff:ffff:ffff"},
		{"fd00::/126", "fd00::1", "fd00::2", "fd00::3"},
	} {
		r := netip.MustParsePrefix(tt.r)
		first, last := usable(r)
		if got := Gateway(r).String(); got != tt.gw {
			t.Errorf("Gateway(%s) = %s, want %s", r, got, tt.gw)
		}
		if first.String() != tt.first || last.String() != tt.last {
			t.Errorf("usable(%s) = %s..%s, want %s..%s", r, first, last, tt.first, tt.last)
		}
	}
}

func TestSetRangesValidation(t *testing.T) {
	s, _ := openTest(t)
	for _, bad := range [][]string{
		{"10.0.0.0/24", "10.1.0.0/24"},
		{"fd00::/64", "fd01::/64"},
		{"10.0.0.0/31"},
		{"fd00::/127"},
		{"::ffff:10.0.0.0/120"},
	} {
		if err := s.SetRanges(prefixes(t, bad...)); err == nil {
			t.Errorf("SetRanges(%v) succeeded", bad)
		}
	}
	if err := s.SetRanges([]netip.Prefix{{}}); err == nil {
		t.Error("SetRanges with an invalid prefix succeeded")
	}
	if got := s.Ranges(); len(got) != 0 {
		t.Errorf("failed SetRanges left ranges %v", got)
	}

	if err := s.SetRanges(prefixes(t, "fd00:10:244:1::5/64", "10.244.1.5/24")); err != nil {
		t.Fatal(err)
	}
	want := prefixes(t, "fd00:10:244:1::/64", "10.244.1.0/24")
	if got := s.Ranges(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Ranges() = %v, want %v (masked, order kept)", got, want)
	}
}
