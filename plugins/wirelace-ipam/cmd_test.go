package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/wirelace/wirelace/netconf"
	"github.com/wirelace/wirelace/plugins/internal/fakedaemon"
)

// runIPAM runs the wirelace-ipam binary as a delegating plugin would, and
// returns its stdout and error result.
func runIPAM(t *testing.T, command, containerID, cniArgs, conf string) ([]byte, error) {
	t.Helper()
	args := &invoke.Args{
		Command:       command,
		ContainerID:   containerID,
		NetNS:         "/var/run/netns/some-pod",
		IfName:        "eth0",
		PluginArgsStr: cniArgs,
		Path:          binDir,
	}
	return (&invoke.RawExec{}).ExecPlugin(context.Background(), filepath.Join(binDir, "wirelace-ipam"), []byte(conf), args.AsEnv())
}

func ipamConf(socket, extra string) string {
	return `{"cniVersion":"1.1.0","name":"net","type":"ptp","ipam":{"type":"wirelace-ipam","socket":"` + socket + `"` + extra + `}}`
}

func wantCode(t *testing.T, err error, code uint, msg string) {
	t.Helper()
	var cniErr *types.Error
	if !errors.As(err, &cniErr) {
		t.Fatalf("got %v (%T), want an error result with code %d", err, err, code)
	}
	if cniErr.Code != code || !strings.Contains(cniErr.Error(), msg) {
		t.Fatalf("got code %d %q, want code %d containing %q", cniErr.Code, cniErr.Error(), code, msg)
	}
}

// TestVerbs runs each verb against the fake daemon; no namespace is needed:
// the IPAM plugin only talks to the daemon.
func TestVerbs(t *testing.T) {
	d := fakedaemon.Start(t, fakedaemon.Options{})
	conf := ipamConf(d.Socket(), `,"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]`)
	podArgs := "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=1234-abcd"

	out, err := runIPAM(t, "ADD", "ctr-a", podArgs, conf)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	r, err := types100.NewResult(out)
	if err != nil {
		t.Fatal(err)
	}
	res := r.(*types100.Result)
	var got []string
	for _, ip := range res.IPs {
		got = append(got, ip.Address.String()+" gw "+ip.Gateway.String())
	}
	if want := "10.244.1.2/24 gw 10.244.1.1,fd00:10:244:1::2/64 gw fd00:10:244:1::1"; strings.Join(got, ",") != want {
		t.Errorf("IPs %v, want %s", got, want)
	}
	if len(res.Routes) != 2 || res.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Errorf("routes %v", res.Routes)
	}
	a := d.Allocations()
	if len(a) != 1 || a[0].PodNamespace != "default" || a[0].PodName != "web-0" || a[0].PodUID != "1234-abcd" || a[0].Netns != "/var/run/netns/some-pod" {
		t.Errorf("allocation %+v", a)
	}

	// Repeated ADD: same addresses.
	again, err := runIPAM(t, "ADD", "ctr-a", podArgs, conf)
	if err != nil || string(again) != string(out) {
		t.Errorf("repeated ADD: %v\n%s\nfirst\n%s", err, again, out)
	}

	// CHECK with the result as prevResult passes; with an address the
	// daemon does not hold, fails.
	withPrev := func(prev []byte) string {
		var m map[string]any
		_ = json.Unmarshal([]byte(conf), &m)
		var p map[string]any
		_ = json.Unmarshal(prev, &p)
		m["prevResult"] = p
		b, _ := json.Marshal(m)
		return string(b)
	}
	if _, err := runIPAM(t, "CHECK", "ctr-a", "", withPrev(out)); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	wrong := strings.Replace(string(out), "10.244.1.2/24", "10.244.1.99/24", 1)
	_, err = runIPAM(t, "CHECK", "ctr-a", "", withPrev([]byte(wrong)))
	wantCode(t, err, types.ErrInternal, "the pod has 10.244.1.99 but wirelaced's allocation")

	// STATUS.
	if _, err := runIPAM(t, "STATUS", "", "", conf); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	d.SetReady(false, "no pod CIDRs yet")
	_, err = runIPAM(t, "STATUS", "", "", conf)
	wantCode(t, err, types.ErrPluginNotAvailable, "wirelaced is not ready: no pod CIDRs yet")
	_, err = runIPAM(t, "ADD", "ctr-b", "", conf)
	wantCode(t, err, types.ErrTryAgainLater, "wirelaced is not ready yet")
	d.SetReady(true, "")

	// GC keeps the valid attachment and releases the rest.
	if _, err := runIPAM(t, "ADD", "ctr-b", "", conf); err != nil {
		t.Fatal(err)
	}
	gcConf := strings.Replace(conf, `"name":"net"`, `"name":"net","cni.dev/valid-attachments":[{"containerID":"ctr-b","ifname":"eth0"}]`, 1)
	if _, err := runIPAM(t, "GC", "", "", gcConf); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if a := d.Allocations(); len(a) != 1 || a[0].ContainerID != "ctr-b" {
		t.Errorf("after GC: %+v", a)
	}
	_, err = runIPAM(t, "CHECK", "ctr-a", "", conf)
	wantCode(t, err, types.ErrInternal, "wirelaced holds no allocation for container ctr-a eth0")

	// DEL releases, and succeeds again for what is gone.
	for range 2 {
		if _, err := runIPAM(t, "DEL", "ctr-b", "", conf); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
	if a := d.Allocations(); len(a) != 0 {
		t.Errorf("after DEL: %+v", a)
	}

	// Daemon down: DEL succeeds, recording the release for the daemon; GC
	// must be retried (11), STATUS is 50.
	d.Down()
	if _, err := runIPAM(t, "DEL", "ctr-b", "", conf); err != nil {
		t.Fatalf("DEL with the daemon down: %v", err)
	}
	if pending, _, err := netconf.ReadPendingReleases(d.Socket()); err != nil || len(pending) != 1 || pending[0].ContainerID != "ctr-b" {
		t.Fatalf("pending releases %+v (%v), want one for ctr-b", pending, err)
	}
	_, err = runIPAM(t, "GC", "", "", conf)
	wantCode(t, err, types.ErrTryAgainLater, "daemon not running")
	_, err = runIPAM(t, "STATUS", "", "", conf)
	wantCode(t, err, types.ErrPluginNotAvailable, "wirelaced does not answer on "+d.Socket())
	_, err = runIPAM(t, "CHECK", "ctr-b", "", conf)
	wantCode(t, err, types.ErrTryAgainLater, "daemon not running")
}

func TestCommandErrors(t *testing.T) {
	absent := filepath.Join(t.TempDir(), "absent.sock")
	for _, tc := range []struct {
		name, command, args, conf string
		code                      uint
		msg                       string
	}{
		{"unknown cniVersion", "ADD", "", `{"cniVersion":"0.9.9","name":"n","ipam":{"type":"wirelace-ipam"}}`, types.ErrIncompatibleCNIVersion, "incompatible CNI versions"},
		{"missing name", "ADD", "", `{"cniVersion":"1.1.0","ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "missing network name"},
		{"socket relative", "ADD", "", ipamConf("wirelaced.sock", ""), types.ErrInvalidNetworkConfig, "must be an absolute path"},
		{"route without dst", "ADD", "", ipamConf(absent, `,"routes":[{"gw":"10.0.0.1"}]`), types.ErrInvalidNetworkConfig, `ipam.routes[0] has no "dst"`},
		{"bad CNI_ARGS", "ADD", "K8S_POD_NAMESPACE=a;;K8S_POD_NAME=b;junk", ipamConf(absent, ""), types.ErrInvalidEnvironmentVariables, `"junk" is not KEY=VALUE`},
		{"bad namespace", "ADD", "K8S_POD_NAMESPACE=Not_A_Namespace;K8S_POD_NAME=b", ipamConf(absent, ""), types.ErrInvalidEnvironmentVariables, "is not a Kubernetes namespace name"},
		{"socket absent", "ADD", "", ipamConf(absent, ""), types.ErrTryAgainLater, "allocate addresses for container ctr eth0: wirelaced unavailable: daemon not running (nothing listens on " + absent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runIPAM(t, tc.command, "ctr", tc.args, tc.conf)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
}
