package cnierr

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/wirelace/wirelace/netconf"
)

func TestDaemon(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code uint
		msg  string
	}{
		{fmt.Errorf("%w: nothing answers on /x", netconf.ErrUnavailable), types.ErrTryAgainLater, "allocate: wirelaced unavailable: nothing answers on /x"},
		{&netconf.APIError{Status: 503, Message: "not ready: no pod CIDRs"}, types.ErrTryAgainLater, "allocate: wirelaced is not ready yet: not ready: no pod CIDRs"},
		{&netconf.APIError{Status: 500, Message: "pool exhausted"}, types.ErrInternal, "allocate: wirelaced: pool exhausted"},
		{errors.New("decode answer"), types.ErrInternal, "allocate: decode answer"},
	} {
		err := Daemon(tc.err, "allocate")
		if Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Daemon(%v) = code %d %q, want %d %q", tc.err, Code(err), err, tc.code, tc.msg)
		}
	}
	if Daemon(nil, "x") != nil {
		t.Error("Daemon(nil) != nil")
	}
}

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		st  netconf.Status
		err error
		msg string
	}{
		{netconf.Status{Ready: false, Reason: "no MeshNode yet"}, nil, "wirelaced is not ready: no MeshNode yet"},
		{netconf.Status{}, nil, "wirelaced is not ready: no reason given"},
		{netconf.Status{}, fmt.Errorf("%w: dial", netconf.ErrUnavailable), "wirelaced does not answer on /s: is the wirelace DaemonSet pod running"},
		{netconf.Status{}, &netconf.APIError{Status: 503, Message: "starting"}, "wirelaced is not ready: starting"},
	} {
		err := Status(tc.st, tc.err, "/s")
		if Code(err) != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Status(%+v, %v) = code %d %q, want 50 %q", tc.st, tc.err, Code(err), err, tc.msg)
		}
	}
	if err := Status(netconf.Status{Ready: true}, nil, "/s"); err != nil {
		t.Errorf("ready: %v", err)
	}
}

func TestWrapKeepsCode(t *testing.T) {
	err := Wrap(types.NewError(types.ErrTryAgainLater, "inner", "d"), "IPAM plugin %s", "x")
	var e *types.Error
	if !errors.As(err, &e) || e.Code != 11 || e.Msg != "IPAM plugin x: inner" || e.Details != "d" {
		t.Errorf("got %#v", err)
	}
	if Code(Wrap(errors.New("plain"), "ctx")) != types.ErrInternal {
		t.Error("plain error not 999")
	}
	if Code(Annotate(types.NewError(7, "a", ""), "(b)")) != 7 {
		t.Error("Annotate lost the code")
	}
}
