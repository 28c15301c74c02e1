// Package cnierr turns what goes wrong in the Wirelace plugins into CNI error
// results with the spec's codes, so a runtime knows whether to retry, and
// a person reading kubelet's events knows what to do.
package cnierr

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/wirelace/wirelace/netconf"
)

// Daemon maps an error of a netconf.Client call made while doing something
// (e.g. "allocate addresses for container X") to a CNI error:
//   - the daemon did not answer, or answered "not ready" (503): code 11, the
//     runtime retries later; wirelaced starts after the runtime on a booting
//     node, so this is the normal transient case;
//   - any other refusal: code 999 with the daemon's message.
func Daemon(err error, doing string) error {
	if err == nil {
		return nil
	}
	var apiErr *netconf.APIError
	switch {
	case errors.Is(err, netconf.ErrUnavailable):
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s: %v", doing, err), "")
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusServiceUnavailable:
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s: wirelaced is not ready yet: %s", doing, apiErr.Message), "")
	default:
		return types.NewError(types.ErrInternal, fmt.Sprintf("%s: %v", doing, err), "")
	}
}

// Status answers a CNI STATUS from the daemon's status (or the error of
// asking for it): nil when ready, code 50 (plugin not available) otherwise.
func Status(st netconf.Status, err error, socket string) error {
	if err != nil {
		var apiErr *netconf.APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusServiceUnavailable {
			return types.NewError(types.ErrPluginNotAvailable, "wirelaced is not ready: "+apiErr.Message, "")
		}
		if errors.Is(err, netconf.ErrUnavailable) {
			return types.NewError(types.ErrPluginNotAvailable,
				fmt.Sprintf("wirelaced does not answer on %s: is the wirelace DaemonSet pod running on this node?", socket), err.Error())
		}
		return types.NewError(types.ErrPluginNotAvailable, "cannot read wirelaced's status: "+err.Error(), "")
	}
	if !st.Ready {
		reason := st.Reason
		if reason == "" {
			reason = "no reason given"
		}
		return types.NewError(types.ErrPluginNotAvailable, "wirelaced is not ready: "+reason, "")
	}
	return nil
}

// Wrap adds context to err and keeps its CNI code if it has one (an error
// result of a delegated plugin, say), else makes it code 999.
func Wrap(err error, format string, a ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, a...)
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		return types.NewError(cniErr.Code, msg+": "+cniErr.Msg, cniErr.Details)
	}
	return types.NewError(types.ErrInternal, msg+": "+err.Error(), "")
}

// Code returns err's CNI code, 999 if it has none, 0 for nil.
func Code(err error) uint {
	if err == nil {
		return 0
	}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		return cniErr.Code
	}
	return types.ErrInternal
}

// New makes a CNI error with a formatted message.
func New(code uint, format string, a ...any) error {
	return types.NewError(code, fmt.Sprintf(format, a...), "")
}

// Annotate appends note to err's message and keeps its code.
func Annotate(err error, note string) error {
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		return types.NewError(cniErr.Code, cniErr.Msg+" "+note, cniErr.Details)
	}
	return types.NewError(types.ErrInternal, err.Error()+" "+note, "")
}
