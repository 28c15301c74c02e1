package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cniError is the CNI error result a plugin prints on failure.
type cniError struct {
	Code    int    `json:"code"`
	Msg     string `json:"msg"`
	Details string `json:"details"`
}

// TestCNIBadInput: each malformed or wrong configuration, environment or
// argument, driven through the real plugin binary against the real daemon
// exactly as a runtime calls it, returns the CNI error code the spec gives
// with a message a person can act on, and leaves nothing behind: no veth,
// no route, no allocation.
func TestCNIBadInput(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	n := startPodNodes(t, l, "n1")[0]
	pod, err := n.NewPod(ctx, "bad")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(repoRoot(t), "bin")
	notNetns := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notNetns, nil, 0o644)

	conf := func(mut func(m map[string]any)) string {
		m := map[string]any{
			"cniVersion": "1.1.0", "name": "wirelace", "type": "wirelace", "socket": n.Socket,
			"ipam": map[string]any{"type": "wirelace-ipam", "socket": n.Socket},
		}
		if mut != nil {
			mut(m)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	good := conf(nil)
	env := map[string]string{
		"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "bad-1", "CNI_NETNS": pod.NetnsPath(),
		"CNI_IFNAME": "eth0", "CNI_PATH": bin, "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bad",
	}
	with := func(k, v string) map[string]string {
		e := map[string]string{}
		for a, b := range env {
			e[a] = b
		}
		if v == "<unset>" {
			delete(e, k)
		} else {
			e[k] = v
		}
		return e
	}
	cases := []struct {
		name string
		conf string
		env  map[string]string
		code int
		want string // in the message or details, case-insensitive
	}{
		{"not JSON", "{nope", env, 6, "unmarshal"},
		{"unknown cniVersion", conf(func(m map[string]any) { m["cniVersion"] = "9.9.9" }), env, 1, "9.9.9"},
		{"no name", conf(func(m map[string]any) { delete(m, "name") }), env, 7, "name"},
		{"no ipam", conf(func(m map[string]any) { delete(m, "ipam") }), env, 7, "ipam"},
		{"ipam without type", conf(func(m map[string]any) { m["ipam"] = map[string]any{"socket": n.Socket} }), env, 7, "type"},
		{"mtu of the wrong type", conf(func(m map[string]any) { m["mtu"] = "big" }), env, 7, "mtu"},
		{"mtu too small", conf(func(m map[string]any) { m["mtu"] = 100 }), env, 7, "mtu"},
		{"relative socket path", conf(func(m map[string]any) { m["socket"] = "wirelaced.sock" }), env, 7, "socket"},
		{"sockets disagree", conf(func(m map[string]any) {
			m["ipam"] = map[string]any{"type": "wirelace-ipam", "socket": "/run/other.sock"}
		}), env, 7, "socket"},
		{"daemon socket absent", conf(func(m map[string]any) {
			m["socket"] = "/run/wirelace-absent.sock"
			m["ipam"] = map[string]any{"type": "wirelace-ipam", "socket": "/run/wirelace-absent.sock"}
		}), env, 11, "wirelace-absent.sock"},
		{"bad CNI_ARGS", good, with("CNI_ARGS", "K8S_POD_NAME"), 4, "CNI_ARGS"},
		{"no CNI_NETNS", good, with("CNI_NETNS", "<unset>"), 4, "CNI_NETNS"},
		{"netns does not exist", good, with("CNI_NETNS", "/run/netns/wirelace-no-such-netns"), 4, "wirelace-no-such-netns"},
		{"netns is a plain file", good, with("CNI_NETNS", notNetns), 4, "netns"},
		{"interface name too long", good, with("CNI_IFNAME", "a-very-long-ifname"), 4, "interface name"},
		{"no container ID", good, with("CNI_CONTAINERID", "<unset>"), 4, "CNI_CONTAINERID"},
		{"standalone config after another plugin", conf(func(m map[string]any) {
			m["prevResult"] = map[string]any{"cniVersion": "1.1.0", "ips": []any{map[string]any{"address": "10.9.9.9/24"}}}
		}), env, 7, "remove \"ipam\" to chain it"},
		{"chained, prevResult without the pod's address", conf(func(m map[string]any) {
			delete(m, "ipam")
			m["prevResult"] = map[string]any{"cniVersion": "1.1.0",
				"interfaces": []any{map[string]any{"name": "cni0"}}, // the host's bridge, not the pod's
				"ips":        []any{map[string]any{"address": "10.9.9.9/24", "interface": 0}, map[string]any{"address": "10.9.9.8/24", "interface": 5}}}
		}), env, 7, "prevResult has no address on the pod's interface"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, out := runPlugin(t, n.NetNS, filepath.Join(bin, "wirelace"), tc.env, tc.conf)
			if e == nil {
				t.Fatalf("succeeded; output %s", out)
			}
			text := strings.ToLower(e.Msg + " " + e.Details)
			if e.Code != tc.code || !strings.Contains(text, strings.ToLower(tc.want)) {
				t.Fatalf("got code %d %q (%s), want code %d mentioning %q", e.Code, e.Msg, e.Details, tc.code, tc.want)
			}
			t.Logf("code %d: %s %s", e.Code, e.Msg, e.Details)
			if v := hostVeths(t, n); len(v) != 0 {
				t.Fatalf("left veths behind: %v", v)
			}
			if r := podRoutes(t, n); len(r) != 0 {
				t.Fatalf("left routes behind: %v", r)
			}
			if a := allocations(t, n); len(a) != 0 {
				t.Fatalf("left allocations behind: %v", a)
			}
			if links, _ := pod.Exec(ctx, "ip", "-o", "link"); strings.Contains(links, "eth0") {
				t.Fatalf("left an interface in the pod: %s", links)
			}
		})
	}
}

// runPlugin runs a CNI plugin binary in the node's namespace with env and
// the config on stdin, and returns its error result, if any, and stdout.
func runPlugin(t *testing.T, netns, bin string, env map[string]string, conf string) (*cniError, string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", netns, bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%s", k, v))
	}
	cmd.Stdin = strings.NewReader(conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return nil, stdout.String()
	}
	var e cniError
	if jerr := json.Unmarshal(stdout.Bytes(), &e); jerr != nil {
		t.Fatalf("plugin failed (%v) without a CNI error result: stdout %q stderr %q", err, stdout.String(), stderr.String())
	}
	if e.Msg == "" {
		t.Fatalf("error result without a message: %s", stdout.String())
	}
	return &e, stdout.String()
}
