package node

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wirelace/wirelace/ipam"
	"github.com/wirelace/wirelace/netconf"
)

func TestIPAMConversions(t *testing.T) {
	s, err := ipam.Open(filepath.Join(t.TempDir(), "ipam.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetRanges(prefixes(t, "10.244.1.0/24", "fd00:10:244:1::/64")); err != nil {
		t.Fatal(err)
	}
	req := netconf.AllocateRequest{
		Network:       "wirelace",
		AttachmentKey: netconf.AttachmentKey{ContainerID: "abc", IfName: "eth0"},
		Netns:         "/var/run/netns/x",
		PodNamespace:  "default",
		PodName:       "web",
		PodUID:        "u1",
	}
	a, err := s.Allocate(ipam.Key(req.AttachmentKey), ownerOf(req))
	if err != nil {
		t.Fatal(err)
	}
	want := []netconf.AllocatedIP{
		{Address: "10.244.1.2/24", Gateway: "10.244.1.1"},
		{Address: "fd00:10:244:1::2/64", Gateway: "fd00:10:244:1::1"},
	}
	if got := allocatedIPs(a); !slices.Equal(got, want) {
		t.Errorf("allocatedIPs = %v, want %v", got, want)
	}
	n := listed(a)
	if n.AttachmentKey != req.AttachmentKey || n.PodUID != "u1" || n.Network != "wirelace" || n.Netns != req.Netns || n.Created == "" ||
		!slices.Equal(n.IPs, []string{"10.244.1.2/24", "fd00:10:244:1::2/64"}) {
		t.Errorf("listed = %+v", n)
	}
}

func prefixes(t *testing.T, s ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}
