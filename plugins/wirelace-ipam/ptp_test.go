package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/wirelace/wirelace/plugins/internal/fakedaemon"
	"github.com/wirelace/wirelace/plugins/internal/testenv"
)

// TestUnderPTP runs wirelace-ipam as the IPAM of the reference ptp plugin,
// through libcni, with a throwaway netns as the host.
func TestUnderPTP(t *testing.T) {
	testenv.RequireRoot(t)
	host := testenv.HostNS(t)
	d := fakedaemon.Start(t, fakedaemon.Options{IPv4: true})
	conflist, _ := json.Marshal(map[string]any{
		"cniVersion": "1.1.0",
		"name":       "ptp-wirelace",
		"plugins": []any{map[string]any{
			"type": "ptp",
			"mtu":  1400,
			"ipam": map[string]any{
				"type":   "wirelace-ipam",
				"socket": d.Socket(),
				"routes": []any{map[string]any{"dst": "0.0.0.0/0"}},
			},
		}},
	})
	list, err := libcni.ConfListFromBytes(conflist)
	if err != nil {
		t.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), nil)
	pod := testenv.NetNS(t)
	rt := &libcni.RuntimeConf{ContainerID: "ctr-ptp", NetNS: pod.Path(), IfName: "eth0"}
	inHost := func(f func() error) error { return host.Do(func(ns.NetNS) error { return f() }) }

	var r types.Result
	if err := inHost(func() (err error) {
		r, err = cni.AddNetworkList(context.Background(), list, rt)
		return err
	}); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	t.Cleanup(func() { _ = inHost(func() error { return cni.DelNetworkList(context.Background(), list, rt) }) })
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.244.1.2/24" || res.IPs[0].Gateway.String() != "10.244.1.1" {
		t.Fatalf("IPs %v", res.IPs)
	}
	if err := inHost(func() error { return cni.CheckNetworkList(context.Background(), list, rt) }); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := inHost(func() error {
		out, err := exec.Command("ping", "-c", "2", "-i", "0.2", "-W", "2", "10.244.1.2").CombinedOutput()
		if err != nil {
			t.Logf("%s", out)
		}
		return err
	}); err != nil {
		t.Errorf("ping the ptp pod from the host: %v", err)
	}
	if err := inHost(func() error { return cni.GetStatusNetworkList(context.Background(), list) }); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	if err := inHost(func() error { return cni.DelNetworkList(context.Background(), list, rt) }); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if a := d.Allocations(); len(a) != 0 {
		t.Errorf("allocations after DEL: %+v", a)
	}
}
