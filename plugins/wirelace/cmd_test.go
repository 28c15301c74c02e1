package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
)

// These tests run the built binary as a runtime would, for the answers that
// need no network namespace: the codes and messages of bad input and of an
// absent daemon, through skel's handling of versions and environment.

// runPlugin runs the wirelace binary and returns its error result, if any.
func runPlugin(t *testing.T, command, netns, cniArgs, conf string) error {
	t.Helper()
	args := &invoke.Args{
		Command:       command,
		ContainerID:   "ctr-1",
		NetNS:         netns,
		IfName:        "eth0",
		PluginArgsStr: cniArgs,
		Path:          binDir,
	}
	_, err := (&invoke.RawExec{}).ExecPlugin(context.Background(), filepath.Join(binDir, "wirelace"), []byte(conf), args.AsEnv())
	return err
}

func TestCommandErrors(t *testing.T) {
	absent := filepath.Join(t.TempDir(), "nothing.sock")
	regular := filepath.Join(t.TempDir(), "not-a-netns")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := func(extra string) string {
		return `{"cniVersion":"1.1.0","name":"wl","type":"wirelace","socket":"` + absent + `","ipam":{"type":"wirelace-ipam","socket":"` + absent + `"}` + extra + `}`
	}
	selfNS := "/proc/self/ns/net"
	for _, tc := range []struct {
		name, command, netns, args, conf string
		code                             uint
		msg                              string
	}{
		{"unknown cniVersion", "ADD", selfNS, "", `{"cniVersion":"9.9.9","name":"wl","type":"wirelace","ipam":{"type":"wirelace-ipam"}}`, types.ErrIncompatibleCNIVersion, "incompatible CNI versions"},
		{"cniVersion too old for STATUS", "STATUS", "", "", `{"cniVersion":"1.0.0","name":"wl","type":"wirelace","ipam":{"type":"wirelace-ipam"}}`, types.ErrIncompatibleCNIVersion, "does not allow STATUS"},
		{"not JSON", "ADD", selfNS, "", `{"cniVersion":`, types.ErrDecodingFailure, "unmarshal"},
		{"missing name", "ADD", selfNS, "", `{"cniVersion":"1.1.0","type":"wirelace","ipam":{"type":"wirelace-ipam"}}`, types.ErrInvalidNetworkConfig, "missing network name"},
		{"missing ipam", "ADD", selfNS, "", `{"cniVersion":"1.1.0","name":"wl","type":"wirelace"}`, types.ErrInvalidNetworkConfig, "ipam.type is missing"},
		{"mtu a string", "ADD", selfNS, "", conf(`,"mtu":"1400"`), types.ErrInvalidNetworkConfig, "mtu: got JSON string"},
		{"mtu out of range", "ADD", selfNS, "", conf(`,"mtu":65536`), types.ErrInvalidNetworkConfig, "mtu 65536 is out of range"},
		{"ipam and prevResult", "ADD", selfNS, "", conf(`,"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.1.1.2/24"}]}`), types.ErrInvalidNetworkConfig, "remove \"ipam\" to chain it"},
		{"chained, no pod address", "ADD", selfNS, "", `{"cniVersion":"1.1.0","name":"wl","type":"wirelace","socket":"` + absent + `","prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[]}}`, types.ErrInvalidNetworkConfig, "prevResult has no address on the pod's interface eth0"},
		{"chained, daemon down", "ADD", selfNS, "", `{"cniVersion":"1.1.0","name":"wl","type":"wirelace","socket":"` + absent + `","prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.1.1.2/24"}]}}`, types.ErrTryAgainLater, "daemon not running"},
		{"bad CNI_ARGS", "ADD", selfNS, "K8S_POD_NAMESPACE", conf(""), types.ErrInvalidEnvironmentVariables, `invalid CNI_ARGS: "K8S_POD_NAMESPACE" is not KEY=VALUE`},
		{"bad pod name", "ADD", selfNS, "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=Web_1", conf(""), types.ErrInvalidEnvironmentVariables, "is not a Kubernetes pod name"},
		{"CNI_NETNS missing", "ADD", "", "", conf(""), types.ErrInvalidEnvironmentVariables, "CNI_NETNS"},
		{"netns does not exist", "ADD", "/var/run/netns/wirelace-test-absent", "", conf(""), types.ErrInvalidEnvironmentVariables, "CNI_NETNS=/var/run/netns/wirelace-test-absent does not exist"},
		{"netns not a netns", "ADD", regular, "", conf(""), types.ErrInvalidEnvironmentVariables, "is not a network namespace"},
		{"socket absent on ADD", "ADD", selfNS, "", conf(""), types.ErrTryAgainLater, "daemon not running (nothing listens on " + absent},
		{"socket absent on STATUS", "STATUS", "", "", conf(""), types.ErrPluginNotAvailable, "wirelaced does not answer on " + absent},
		{"socket absent on GC", "GC", "", "", conf(""), types.ErrTryAgainLater, "daemon not running"},
		{"CHECK without prevResult", "CHECK", selfNS, "", conf(""), types.ErrInvalidNetworkConfig, "CHECK needs prevResult"},
		{"IPAM plugin not installed", "ADD", selfNS, "", `{"cniVersion":"1.1.0","name":"wl","type":"wirelace","mtu":1400,"ipam":{"type":"no-such-ipam"}}`, types.ErrInternal, `failed to find plugin "no-such-ipam"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runPlugin(t, tc.command, tc.netns, tc.args, tc.conf)
			var cniErr *types.Error
			if !errors.As(err, &cniErr) {
				t.Fatalf("got %v (%T), want an error result with code %d", err, err, tc.code)
			}
			if cniErr.Code != tc.code || !strings.Contains(cniErr.Error(), tc.msg) {
				t.Errorf("got code %d %q, want code %d containing %q", cniErr.Code, cniErr.Error(), tc.code, tc.msg)
			}
		})
	}
}
