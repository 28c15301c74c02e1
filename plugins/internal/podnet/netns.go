package podnet

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
)

// OpenNetNS opens the pod's network namespace at path (CNI_NETNS). A path
// that does not exist or is not a network namespace is a *types.Error with
// code 4 (invalid environment variable), naming the variable as the spec
// asks.
func OpenNetNS(path string) (ns.NetNS, error) {
	netns, err := ns.GetNS(path)
	if err == nil {
		return netns, nil
	}
	var notExist ns.NSPathNotExistErr
	var notNS ns.NSPathNotNSErr
	switch {
	case errors.As(err, &notExist):
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS=%s does not exist: has the sandbox gone away?", path), "")
	case errors.As(err, &notNS):
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS=%s is not a network namespace", path), err.Error())
	default:
		return nil, fmt.Errorf("open pod netns %s: %w", path, err)
	}
}
