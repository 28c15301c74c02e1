package netconf

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Plugin type names, as written in a conflist's "type" fields.
const (
	PluginType = "wirelace"
	IPAMType   = "wirelace-ipam"
)

// MTU bounds a configuration may ask for. 68 is IPv4's minimum link MTU and
// 65535 the largest a veth takes; IPv6 needs at least MinIPv6MTU, which is
// checked once the addresses are known.
const (
	MinMTU     = 68
	MaxMTU     = 65535
	MinIPv6MTU = 1280
)

// PluginConf is the network configuration of the wirelace CNI plugin.
//
// It embeds types.PluginConf for the generic fields (cniVersion, name, type,
// dns, prevResult, cni.dev/valid-attachments). Do not json.Marshal a
// PluginConf: the embedded type's MarshalJSON would drop the fields below.
type PluginConf struct {
	types.PluginConf

	// Socket is wirelaced's local API socket (default DefaultSocket).
	Socket string `json:"socket,omitempty"`
	// MTU of both ends of the pod veth; 0 asks the daemon, which knows the
	// tunnel's MTU.
	MTU int `json:"mtu,omitempty"`
	// IPAM shadows types.PluginConf.IPAM to read the socket too.
	IPAM IPAMConf `json:"ipam,omitempty"`
}

// IPAMConf is the "ipam" section that wirelace-ipam reads.
type IPAMConf struct {
	Type string `json:"type,omitempty"`
	// Socket is wirelaced's local API socket (default DefaultSocket).
	Socket string `json:"socket,omitempty"`
	// Routes are returned as they are in the IPAM result, for the plugins
	// (ptp, bridge) that install the routes their IPAM returns. The wirelace
	// plugin ignores them: it installs its own routes.
	Routes []*types.Route `json:"routes,omitempty"`
}

// IPAMNetConf is what wirelace-ipam reads: the whole network configuration
// of the plugin that delegates to it, of which it needs only the generic
// fields and its "ipam" section.
type IPAMNetConf struct {
	types.PluginConf
	IPAM IPAMConf `json:"ipam,omitempty"`
}

// LoadPluginConf parses and validates the wirelace plugin's configuration
// (the bytes a runtime writes on stdin) and fills in defaults. Errors are
// *types.Error: code 6 for undecodable JSON, 7 for an invalid configuration.
func LoadPluginConf(stdin []byte) (*PluginConf, error) {
	conf := &PluginConf{}
	if err := decode(stdin, conf); err != nil {
		return nil, err
	}
	if err := checkCommon(&conf.PluginConf); err != nil {
		return nil, err
	}
	if conf.MTU != 0 && (conf.MTU < MinMTU || conf.MTU > MaxMTU) {
		return nil, invalid("mtu %d is out of range: use 0 to take the MTU wirelaced reports, or %d..%d", conf.MTU, MinMTU, MaxMTU)
	}
	if err := checkSocket("socket", conf.Socket); err != nil {
		return nil, err
	}
	// An "ipam" object without a type is a slip, not chained mode: chained
	// configs have no ipam section at all.
	if conf.IPAM.Type == "" && (conf.IPAM.Socket != "" || len(conf.IPAM.Routes) > 0) {
		return nil, invalid(`ipam.type is missing: in standalone mode the wirelace plugin gets its addresses from an IPAM plugin, e.g. "ipam": {"type": %q}; chained after another plugin it takes no "ipam" section`, IPAMType)
	}
	if err := checkSocket("ipam.socket", conf.IPAM.Socket); err != nil {
		return nil, err
	}
	// The plugin asks the daemon for the MTU and readiness on one socket and
	// wirelace-ipam asks for addresses on another: they must be the same
	// daemon, and a socket set in one place only is the usual slip.
	if conf.IPAM.Type == IPAMType {
		plugin, ipam := orDefault(conf.Socket), orDefault(conf.IPAM.Socket)
		if plugin != ipam {
			return nil, invalid("socket is %s but ipam.socket is %s: the plugin and wirelace-ipam must talk to the same wirelaced; set both to its socket", plugin, ipam)
		}
	}
	conf.Socket = orDefault(conf.Socket)
	conf.IPAM.Socket = orDefault(conf.IPAM.Socket)
	if err := parsePrevResult(&conf.PluginConf); err != nil {
		return nil, err
	}
	return conf, nil
}

// Chained reports whether the configuration chains wirelace after another
// plugin (the primary CNI, which made the pod's interface and addresses and
// passes them as prevResult) rather than making the pod's interface itself.
// The mode is the configuration's, not the call's: a standalone attachment
// also gets a prevResult on CHECK and DEL. A config with an "ipam" section
// is standalone; one without is chained.
func (c *PluginConf) Chained() bool { return c.IPAM.Type == "" }

// ErrStandaloneNeedsIPAM is ADD's answer to a config that is neither
// standalone (no ipam) nor chained (no prevResult).
func ErrStandaloneNeedsIPAM() *types.Error {
	return invalid(`ipam.type is missing and there is no prevResult: as the first plugin of a conflist (standalone), wirelace needs "ipam": {"type": %q}; to chain it after another CNI (Cilium, bridge, ptp), list it after that plugin, without "ipam"`, IPAMType)
}

// LoadIPAMConf parses and validates the configuration wirelace-ipam gets on
// stdin and fills in defaults. Errors are *types.Error with code 6 or 7.
func LoadIPAMConf(stdin []byte) (*IPAMNetConf, error) {
	conf := &IPAMNetConf{}
	if err := decode(stdin, conf); err != nil {
		return nil, err
	}
	if err := checkCommon(&conf.PluginConf); err != nil {
		return nil, err
	}
	if err := checkSocket("ipam.socket", conf.IPAM.Socket); err != nil {
		return nil, err
	}
	for i, r := range conf.IPAM.Routes {
		if r == nil || r.Dst.IP == nil {
			return nil, invalid(`ipam.routes[%d] has no "dst": give a destination CIDR such as "0.0.0.0/0"`, i)
		}
	}
	conf.IPAM.Socket = orDefault(conf.IPAM.Socket)
	if err := parsePrevResult(&conf.PluginConf); err != nil {
		return nil, err
	}
	return conf, nil
}

// ValidAttachmentKeys turns the runtime's cni.dev/valid-attachments (GC)
// into the daemon's keys.
func ValidAttachmentKeys(conf *types.PluginConf) []AttachmentKey {
	keys := make([]AttachmentKey, 0, len(conf.ValidAttachments))
	for _, a := range conf.ValidAttachments {
		keys = append(keys, AttachmentKey{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	return keys
}

// PodArgs is the pod identity a Kubernetes runtime passes in CNI_ARGS.
type PodArgs struct {
	Namespace string
	Name      string
	UID       string
}

// Kubernetes names: a namespace is a DNS-1123 label, a pod name a DNS-1123
// subdomain. Checked so that a garbled CNI_ARGS is refused rather than
// recorded in the IPAM store.
var (
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	podUID       = regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9]{0,127}$`)
)

// ParsePodArgs reads K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID from
// CNI_ARGS ("K1=V1;K2=V2"). Other keys are ignored, as runtimes add their
// own (IgnoreUnknown, K8S_POD_INFRA_CONTAINER_ID, ...). A malformed CNI_ARGS
// is a *types.Error with code 4 (invalid environment variable).
func ParsePodArgs(cniArgs string) (PodArgs, error) {
	var p PodArgs
	if cniArgs == "" {
		return p, nil
	}
	seen := map[string]bool{}
	for _, pair := range strings.Split(cniArgs, ";") {
		if pair == "" {
			continue // a trailing ";" is harmless
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k == "" {
			return PodArgs{}, badArgs("%q is not KEY=VALUE", pair)
		}
		if seen[k] {
			return PodArgs{}, badArgs("%s is given twice", k)
		}
		seen[k] = true
		switch k {
		case "K8S_POD_NAMESPACE":
			if !dnsLabel.MatchString(v) {
				return PodArgs{}, badArgs("K8S_POD_NAMESPACE=%q is not a Kubernetes namespace name", v)
			}
			p.Namespace = v
		case "K8S_POD_NAME":
			if len(v) > 253 || !dnsSubdomain.MatchString(v) {
				return PodArgs{}, badArgs("K8S_POD_NAME=%q is not a Kubernetes pod name", v)
			}
			p.Name = v
		case "K8S_POD_UID":
			if !podUID.MatchString(v) {
				return PodArgs{}, badArgs("K8S_POD_UID=%q is not a Kubernetes UID", v)
			}
			p.UID = v
		}
	}
	if (p.Name == "") != (p.Namespace == "") {
		return PodArgs{}, badArgs("K8S_POD_NAME and K8S_POD_NAMESPACE must be given together (got name %q, namespace %q)", p.Name, p.Namespace)
	}
	return p, nil
}

// decode unmarshals stdin, turning JSON errors into CNI errors that name the
// offending field.
func decode(stdin []byte, into any) error {
	err := json.Unmarshal(stdin, into)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			return types.NewError(types.ErrDecodingFailure, "network configuration must be a JSON object, got JSON "+typeErr.Value, "")
		}
		return invalid("%s: got JSON %s, want %s", field, typeErr.Value, kindName(typeErr.Type))
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("network configuration is not valid JSON (at byte %d): %v", syntaxErr.Offset, err), "")
	}
	// Custom unmarshalers (CIDRs in routes, IPs in prevResult) end here.
	return invalid("%v", err)
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	default:
		return "an object"
	}
}

// checkCommon validates the generic fields. cniVersion is left to skel,
// which answers an unsupported one with code 1.
func checkCommon(c *types.PluginConf) error {
	if c.Name == "" {
		return invalid(`"name" is missing: the network configuration needs the network's name`)
	}
	return nil
}

func checkSocket(field, path string) error {
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) {
		return invalid("%s %q must be an absolute path (wirelaced listens on %s by default)", field, path, DefaultSocket)
	}
	return nil
}

func parsePrevResult(c *types.PluginConf) error {
	if err := version.ParsePrevResult(c); err != nil {
		return types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	return nil
}

func orDefault(socket string) string {
	if socket == "" {
		return DefaultSocket
	}
	return socket
}

func invalid(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, "invalid network configuration: "+fmt.Sprintf(format, a...), "")
}

func badArgs(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidEnvironmentVariables, "invalid CNI_ARGS: "+fmt.Sprintf(format, a...), "")
}
