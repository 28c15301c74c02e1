package ipam

import (
	"slices"
	"testing"

	"github.com/wirelace/wirelace/netconf"
)

func TestNetconfConversions(t *testing.T) {
	s, _ := openTest(t, "10.244.1.0/24", "fd00:10:244:1::/64")
	req := netconf.AllocateRequest{
		AttachmentKey: netconf.AttachmentKey{ContainerID: "abc", IfName: "eth0"},
		Netns:         "/var/run/netns/x",
		PodNamespace:  "default",
		PodName:       "web",
		PodUID:        "u1",
	}
	a, err := s.Allocate(Key(req.AttachmentKey), OwnerOf(req))
	if err != nil {
		t.Fatal(err)
	}

	want := []netconf.AllocatedIP{
		{Address: "10.244.1.2/24", Gateway: "10.244.1.1"},
		{Address: "fd00:10:244:1::2/64", Gateway: "fd00:10:244:1::1"},
	}
	if got := a.AllocatedIPs(); !slices.Equal(got, want) {
		t.Errorf("AllocatedIPs() = %v, want %v", got, want)
	}

	n := a.Netconf()
	if n.AttachmentKey != req.AttachmentKey || n.PodUID != "u1" || n.Netns != req.Netns || n.Created == "" ||
		!slices.Equal(n.IPs, []string{"10.244.1.2/24", "fd00:10:244:1::2/64"}) {
		t.Errorf("Netconf() = %+v", n)
	}
}
