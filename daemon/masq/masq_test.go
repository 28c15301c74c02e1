package masq

import (
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/wirelace/wirelace/internal/netnstest"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func TestRanges(t *testing.T) {
	got := Ranges(pfx("10.77.0.0/16", "10.77.3.4/32", "10.244.1.0/24", "10.244.0.0/24", "10.244.3.0/24", "10.244.2.128/25"))
	want := []Range{
		{netip.MustParseAddr("10.77.0.0"), netip.MustParseAddr("10.77.255.255")},
		// 10.244.0.0/24 and 1.0/24 abut; 2.128/25 and 3.0/24 abut; 2.0-2.127 is a gap.
		{netip.MustParseAddr("10.244.0.0"), netip.MustParseAddr("10.244.1.255")},
		{netip.MustParseAddr("10.244.2.128"), netip.MustParseAddr("10.244.3.255")},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Ranges = %v, want %v", got, want)
	}
	els := Elements(Ranges(pfx("255.255.255.0/24", "10.0.0.0/8")))
	if len(els) != 3 || !els[1].IntervalEnd || els[2].IntervalEnd {
		t.Fatalf("elements %+v: want 10.0.0.0, end 11.0.0.0, then an open-ended 255.255.255.0", els)
	}
}

// TestApplyAtScale programs the real table in a throwaway network
// namespace with the prefixes of 1000 peers: it must succeed (one rule per
// prefix pair overflowed the netlink buffer at 100 peers) and hold two
// rules per family, whatever the number of peers.
func TestApplyAtScale(t *testing.T) {
	netns := netnstest.New(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("nft is missing: run make deps")
	}

	r := Rules{Local: pfx("10.244.0.0/24", "fd44:1ace::/64"), Cluster: pfx("10.77.0.0/16", "fd77:1ace::/64")}
	for i := 1; i <= 1000; i++ {
		// Every other /24 and scattered /32s: nothing merges away.
		v4 := netip.AddrFrom4([4]byte{10, byte(100 + i/128), byte(2 * (i % 128)), 0})
		r.Cluster = append(r.Cluster, netip.PrefixFrom(v4, 24), netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 20, byte(i / 256), byte(i)}), 32))
		v6 := netip.AddrFrom16([16]byte{0xfd, 0x44, 0x1a, 0xce, 0, 0, byte(i >> 8), byte(i)})
		r.Cluster = append(r.Cluster, netip.PrefixFrom(v6, 64))
	}
	var m Masq
	err := netns.Do(func(ns.NetNS) error { return m.Apply(r) })
	if err != nil {
		t.Fatalf("Apply with 1000 peers: %v", err)
	}
	out, err := exec.Command("nsenter", "--net="+netns.Path(), "nft", "list", "table", "inet", TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	text := string(out)
	if n := strings.Count(text, "masquerade"); n != 2 {
		t.Errorf("%d masquerade rules, want 2:\n%s", n, text)
	}
	if n := strings.Count(text, "return"); n != 2 {
		t.Errorf("%d return rules, want 2", n)
	}
	// Adjacent prefixes merge: the /32s into one range, the IPv6 /64s too.
	for _, want := range []string{"10.107.208.0/24", "172.20.0.1-172.20.3.232", "fd44:1ace:0:1::-fd44:1ace:0:3e8:ffff:ffff:ffff:ffff", "10.77.0.0/16"} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %s", want)
		}
	}
	// Unchanged rules write nothing; changed ones replace the table whole.
	r.Cluster = r.Cluster[:4]
	if err := netns.Do(func(ns.NetNS) error { return m.Apply(r) }); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("nsenter", "--net="+netns.Path(), "nft", "list", "table", "inet", TableName).CombinedOutput()
	if strings.Contains(string(out), "10.107.") || !strings.Contains(string(out), "10.100.2.0/24") || strings.Count(string(out), "masquerade") != 2 {
		t.Errorf("after the mesh shrank:\n%s", out)
	}
}
