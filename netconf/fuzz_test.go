package netconf

import (
	"errors"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// The parsers of what a runtime hands the plugins: never a panic, and an
// error is always a CNI error with a code (the runtime needs one).

func FuzzLoadPluginConf(f *testing.F) {
	f.Add([]byte(goodPlugin))
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","type":"wirelace","prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.1.1.2/24","interface":0}]}}`))
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","mtu":1400,"socket":"/run/x.sock","ipam":{"type":"wirelace-ipam","socket":"/run/x.sock","routes":[{"dst":"0.0.0.0/0"}]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := LoadPluginConf(b)
		if err == nil {
			if c.Name == "" || c.Socket == "" {
				t.Fatalf("accepted a config without name or socket: %+v", c)
			}
			return
		}
		if cniCode(err) == 0 {
			t.Fatalf("error without a CNI code: %v", err)
		}
	})
}

func FuzzLoadIPAMConf(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"n","ipam":{"type":"wirelace-ipam","routes":[{"dst":"::/0","gw":"fe80::1"}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := LoadIPAMConf(b); err != nil && cniCode(err) == 0 {
			t.Fatalf("error without a CNI code: %v", err)
		}
	})
}

func FuzzParsePodArgs(f *testing.F) {
	f.Add("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=0f3c")
	f.Add("K8S_POD_NAME=a;K8S_POD_NAME=b")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePodArgs(s)
		if err != nil {
			if cniCode(err) != 4 {
				t.Fatalf("bad CNI_ARGS gave %v, want code 4", err)
			}
			return
		}
		if (p.Name == "") != (p.Namespace == "") {
			t.Fatalf("accepted a name without a namespace: %+v", p)
		}
	})
}

// cniCode is err's CNI code, 0 if it is not a CNI error.
func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}
