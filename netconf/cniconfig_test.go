package netconf

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

const goodPlugin = `{"cniVersion":"1.1.0","name":"wirelace","type":"wirelace","ipam":{"type":"wirelace-ipam"}}`

func TestLoadPluginConfDefaults(t *testing.T) {
	c, err := LoadPluginConf([]byte(goodPlugin))
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != DefaultSocket || c.IPAM.Socket != DefaultSocket {
		t.Errorf("sockets = %q, %q; want both %q", c.Socket, c.IPAM.Socket, DefaultSocket)
	}
	if c.MTU != 0 || c.IPAM.Type != IPAMType || c.Name != "wirelace" || c.PrevResult != nil {
		t.Errorf("unexpected conf %+v", c)
	}
}

func TestLoadPluginConfFields(t *testing.T) {
	c, err := LoadPluginConf([]byte(`{"cniVersion":"1.1.0","name":"n","type":"wirelace","mtu":1380,
		"socket":"/run/x.sock","ipam":{"type":"wirelace-ipam","socket":"/run/x.sock"},
		"dns":{"nameservers":["10.96.0.10"]},
		"runtimeConfig":{"whatever":1},
		"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.244.1.7/32"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.MTU != 1380 || c.Socket != "/run/x.sock" || c.IPAM.Socket != "/run/x.sock" || len(c.DNS.Nameservers) != 1 {
		t.Errorf("unexpected conf %+v", c)
	}
	if c.PrevResult == nil {
		t.Error("prevResult not parsed")
	}
}

func TestLoadPluginConfOtherIPAM(t *testing.T) {
	// Another IPAM plugin's socket field is none of ours.
	c, err := LoadPluginConf([]byte(`{"cniVersion":"1.1.0","name":"n","type":"wirelace","socket":"/run/a.sock","ipam":{"type":"host-local"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != "/run/a.sock" {
		t.Errorf("socket = %q", c.Socket)
	}
}

// A config without "ipam" is chained mode: valid for every verb (DEL above
// all must work with it); ADD refuses it only if there is no prevResult.
func TestLoadPluginConfChained(t *testing.T) {
	c, err := LoadPluginConf([]byte(`{"cniVersion":"1.1.0","name":"n","type":"wirelace"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Chained() || c.Socket != DefaultSocket {
		t.Errorf("conf %+v: want chained with the default socket", c)
	}
	std, err := LoadPluginConf([]byte(goodPlugin))
	if err != nil || std.Chained() {
		t.Errorf("a config with ipam is standalone: %+v %v", std, err)
	}
}

func TestLoadPluginConfInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		code       uint
		msg        string
	}{
		{"not JSON", `{"name":`, types.ErrDecodingFailure, "not valid JSON"},
		{"JSON array", `[1,2]`, types.ErrDecodingFailure, "must be a JSON object"},
		{"missing name", `{"cniVersion":"1.1.0","type":"wirelace","ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, `"name" is missing`},
		{"name not a string", `{"cniVersion":"1.1.0","name":7,"ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "name: got JSON number, want a string"},
		{"ipam without type", `{"cniVersion":"1.1.0","name":"n","ipam":{"socket":"/run/x.sock"}}`, types.ErrInvalidNetworkConfig, "ipam.type is missing"},
		{"ipam not an object", `{"cniVersion":"1.1.0","name":"n","ipam":"wirelace-ipam"}`, types.ErrInvalidNetworkConfig, "ipam: got JSON string, want an object"},
		{"mtu a string", `{"cniVersion":"1.1.0","name":"n","mtu":"1400","ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "mtu: got JSON string, want an integer"},
		{"mtu fractional", `{"cniVersion":"1.1.0","name":"n","mtu":1400.5,"ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "mtu: got JSON number 1400.5, want an integer"},
		{"mtu negative", `{"cniVersion":"1.1.0","name":"n","mtu":-1,"ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "mtu -1 is out of range"},
		{"mtu too small", `{"cniVersion":"1.1.0","name":"n","mtu":60,"ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "mtu 60 is out of range: use 0"},
		{"mtu too large", `{"cniVersion":"1.1.0","name":"n","mtu":70000,"ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "mtu 70000 is out of range"},
		{"socket relative", `{"cniVersion":"1.1.0","name":"n","socket":"wirelaced.sock","ipam":{"type":"wirelace-ipam","socket":"wirelaced.sock"}}`, types.ErrInvalidNetworkConfig, `socket "wirelaced.sock" must be an absolute path`},
		{"socket a number", `{"cniVersion":"1.1.0","name":"n","socket":5,"ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "socket: got JSON number, want a string"},
		{"ipam socket relative", `{"cniVersion":"1.1.0","name":"n","ipam":{"type":"host-local","socket":"x"}}`, types.ErrInvalidNetworkConfig, `ipam.socket "x" must be an absolute path`},
		{"socket only at top", `{"cniVersion":"1.1.0","name":"n","socket":"/run/a.sock","ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "socket is /run/a.sock but ipam.socket is /run/wirelace/wirelaced.sock"},
		{"sockets differ", `{"cniVersion":"1.1.0","name":"n","socket":"/run/a.sock","ipam":{"type":"wirelace-ipam","socket":"/run/b.sock"}}`, types.ErrInvalidNetworkConfig, "must talk to the same wirelaced"},
		{"dns wrong type", `{"cniVersion":"1.1.0","name":"n","dns":["8.8.8.8"],"ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "dns: got JSON array, want an object"},
		{"prevResult garbage", `{"cniVersion":"1.1.0","name":"n","ipam":{"type":"wirelace-ipam"},"prevResult":{"ips":[{"address":"nope"}]}}`, types.ErrDecodingFailure, "prevResult"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadPluginConf([]byte(tc.conf))
			checkErr(t, err, tc.code, tc.msg)
		})
	}
}

func TestLoadIPAMConf(t *testing.T) {
	c, err := LoadIPAMConf([]byte(`{"cniVersion":"1.1.0","name":"n","type":"ptp","ipam":{"type":"wirelace-ipam","routes":[{"dst":"0.0.0.0/0"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.IPAM.Socket != DefaultSocket || len(c.IPAM.Routes) != 1 || c.IPAM.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Errorf("unexpected conf %+v", c.IPAM)
	}
	// The top-level socket belongs to the parent plugin, not to the IPAM.
	c, err = LoadIPAMConf([]byte(`{"cniVersion":"1.1.0","name":"n","socket":"/run/other.sock","ipam":{"type":"wirelace-ipam"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.IPAM.Socket != DefaultSocket {
		t.Errorf("ipam socket = %q, want the default", c.IPAM.Socket)
	}
}

func TestLoadIPAMConfInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		code       uint
		msg        string
	}{
		{"missing name", `{"cniVersion":"1.1.0","ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, `"name" is missing`},
		{"socket relative", `{"cniVersion":"1.1.0","name":"n","ipam":{"type":"wirelace-ipam","socket":"run/x"}}`, types.ErrInvalidNetworkConfig, "must be an absolute path"},
		{"socket a list", `{"cniVersion":"1.1.0","name":"n","ipam":{"type":"wirelace-ipam","socket":["/a"]}}`, types.ErrInvalidNetworkConfig, "ipam.socket: got JSON array, want a string"},
		{"route without dst", `{"cniVersion":"1.1.0","name":"n","ipam":{"type":"wirelace-ipam","routes":[{"gw":"10.0.0.1"}]}}`, types.ErrInvalidNetworkConfig, `ipam.routes[0] has no "dst"`},
		{"route bad dst", `{"cniVersion":"1.1.0","name":"n","ipam":{"type":"wirelace-ipam","routes":[{"dst":"10.0.0.300/8"}]}}`, types.ErrInvalidNetworkConfig, "10.0.0.300/8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadIPAMConf([]byte(tc.conf))
			checkErr(t, err, tc.code, tc.msg)
		})
	}
}

func TestParsePodArgs(t *testing.T) {
	p, err := ParsePodArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-7db6d8ff4d-x2x5k;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=0b8c3e5e-7b0e-4d1a-9c55-1f1d6b1b2c3d;")
	if err != nil {
		t.Fatal(err)
	}
	want := PodArgs{Namespace: "kube-system", Name: "coredns-7db6d8ff4d-x2x5k", UID: "0b8c3e5e-7b0e-4d1a-9c55-1f1d6b1b2c3d"}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}
	if p, err := ParsePodArgs(""); err != nil || p != (PodArgs{}) {
		t.Errorf("empty CNI_ARGS: %+v, %v", p, err)
	}
}

func TestParsePodArgsInvalid(t *testing.T) {
	for _, tc := range []struct{ args, msg string }{
		{"K8S_POD_NAME", `"K8S_POD_NAME" is not KEY=VALUE`},
		{"=x", `"=x" is not KEY=VALUE`},
		{"K8S_POD_NAMESPACE=Default;K8S_POD_NAME=p", `K8S_POD_NAMESPACE="Default" is not a Kubernetes namespace name`},
		{"K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_NAME=q", "K8S_POD_NAME is given twice"},
		{"K8S_POD_NAMESPACE=default;K8S_POD_NAME=my_pod", `K8S_POD_NAME="my_pod" is not a Kubernetes pod name`},
		{"K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + strings.Repeat("a", 254), "is not a Kubernetes pod name"},
		{"K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=a b", `K8S_POD_UID="a b" is not a Kubernetes UID`},
		{"K8S_POD_NAME=p", "must be given together"},
		{"K8S_POD_NAMESPACE=default", "must be given together"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			_, err := ParsePodArgs(tc.args)
			checkErr(t, err, types.ErrInvalidEnvironmentVariables, tc.msg)
			checkErr(t, err, types.ErrInvalidEnvironmentVariables, "invalid CNI_ARGS: ")
		})
	}
}

func TestValidAttachmentKeys(t *testing.T) {
	c, err := LoadIPAMConf([]byte(`{"cniVersion":"1.1.0","name":"n","ipam":{"type":"wirelace-ipam"},
		"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"net1"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := ValidAttachmentKeys(&c.PluginConf)
	want := []AttachmentKey{{"a", "eth0"}, {"b", "net1"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func checkErr(t *testing.T, err error, code uint, msg string) {
	t.Helper()
	var cniErr *types.Error
	if !errors.As(err, &cniErr) {
		t.Fatalf("got %v (%T), want a *types.Error with code %d", err, err, code)
	}
	if cniErr.Code != code {
		t.Errorf("code %d, want %d (%s)", cniErr.Code, code, cniErr.Error())
	}
	if !strings.Contains(cniErr.Error(), msg) {
		t.Errorf("message %q does not contain %q", cniErr.Error(), msg)
	}
}
