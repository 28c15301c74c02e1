package ipam

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestRegistrations(t *testing.T) {
	s, path := openTest(t)
	a := Registration{Network: "cilium", Key: Key{ContainerID: "c1", IfName: "eth0"},
		IPs: []netip.Addr{netip.MustParseAddr("10.99.1.5"), netip.MustParseAddr("fd99::5")}}
	changed, err := s.Register(a)
	if err != nil || !changed {
		t.Fatalf("register: changed=%v err=%v", changed, err)
	}
	// A repeated ADD changes nothing.
	if changed, err := s.Register(a); err != nil || changed {
		t.Fatalf("repeat: changed=%v err=%v", changed, err)
	}
	// Another attachment may not take an address already registered.
	b := Registration{Network: "cilium", Key: Key{ContainerID: "c2", IfName: "eth0"}, IPs: []netip.Addr{netip.MustParseAddr("10.99.1.5")}}
	if _, err := s.Register(b); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("duplicate address: err=%v, want ErrInvalidKey", err)
	}
	// The same key in another network is another attachment.
	other := Registration{Network: "second", Key: a.Key, IPs: []netip.Addr{netip.MustParseAddr("10.98.0.7")}}
	if _, err := s.Register(other); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Registration{
		{Network: "", Key: a.Key, IPs: a.IPs},
		{Network: "a/b", Key: a.Key, IPs: a.IPs},
		{Network: "n", Key: Key{IfName: "eth0"}, IPs: a.IPs},
		{Network: "n", Key: Key{ContainerID: "x", IfName: "eth0"}},
	} {
		if _, err := s.Register(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("register %+v: err=%v, want ErrInvalidKey", bad, err)
		}
	}

	// GC of one network leaves the other's alone, even with nothing valid.
	removed, err := s.GCRegistrations("second", nil)
	if err != nil || len(removed) != 1 || removed[0].Network != "second" {
		t.Fatalf("gc second: %+v %v", removed, err)
	}
	list, err := s.Registrations()
	if err != nil || len(list) != 1 || list[0].Network != "cilium" || !slices.Equal(list[0].IPs, a.IPs) {
		t.Fatalf("after gc: %+v %v", list, err)
	}

	// Registrations survive a restart.
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if list, _ := s2.Registrations(); len(list) != 1 {
		t.Fatalf("after reopen: %+v", list)
	}
	if found, err := s2.Unregister("cilium", a.Key); err != nil || !found {
		t.Fatalf("unregister: %v %v", found, err)
	}
	if found, err := s2.Unregister("cilium", a.Key); err != nil || found {
		t.Fatalf("unregister again: %v %v", found, err)
	}
}
