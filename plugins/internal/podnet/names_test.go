package podnet

import "testing"

func TestHostVethName(t *testing.T) {
	a := HostVethName("0123456789abcdef", "eth0")
	if len(a) != 15 || !IsHostVethName(a) {
		t.Fatalf("HostVethName = %q", a)
	}
	if a != HostVethName("0123456789abcdef", "eth0") {
		t.Error("not deterministic")
	}
	if a == HostVethName("0123456789abcdef", "net1") || a == HostVethName("0123456789abcdee", "eth0") {
		t.Error("different attachments share a name")
	}
	for _, name := range []string{"lace0", "laceABCDEF01234", "lace0123456789", "lace0123456789ab", "veth0123456789a", "lace0123456789g"} {
		if IsHostVethName(name) {
			t.Errorf("IsHostVethName(%q) = true", name)
		}
	}
}
