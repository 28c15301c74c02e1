package netconf

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// DefaultSocket is where wirelaced serves its local API.
const DefaultSocket = "/run/wirelace/wirelaced.sock"

// StatusPath is the local API path of the daemon's status. With
// NoPeersQuery its peers are left out, which makes it cost O(1).
const (
	StatusPath   = "/v1/status"
	NoPeersQuery = "peers=false"
)

// Status is the answer to GET /v1/status.
type Status struct {
	// Ready is true once the device is up, the node is published and the
	// first reconcile has succeeded; Reason says what is missing if not.
	Ready      bool     `json:"ready"`
	Reason     string   `json:"reason,omitempty"`
	Node       string   `json:"node"`
	Interface  string   `json:"interface"`
	PublicKey  string   `json:"publicKey,omitempty"`
	ListenPort int      `json:"listenPort,omitempty"`
	MTU        int      `json:"mtu,omitempty"`
	MeshIPs    []string `json:"meshIPs,omitempty"`
	Endpoints  []string `json:"endpoints,omitempty"`
	// NATType is this node's NAT as classified by STUN, and NATReason the
	// observations behind it.
	NATType   string        `json:"natType,omitempty"`
	NATReason string        `json:"natReason,omitempty"`
	Relays    []RelayStatus `json:"relays,omitempty"`
	// Install is what wirelace-install last reported about the node's CNI
	// configuration (absent when it has not run, e.g. outside a DaemonSet).
	Install *InstallStatus `json:"install,omitempty"`
	Peers   []PeerStatus   `json:"peers"`
}

// InstallStatus is the status file wirelace-install writes (and the
// daemon shows): whether wirelace is in the CNI configuration, and if not,
// why.
type InstallStatus struct {
	State   InstallState `json:"state"`
	Message string       `json:"message"`
	// Conflist is the CNI config file Wirelace is (to be) in.
	Conflist string `json:"conflist"`
	// Reinserts since the installer started: writes made because another
	// agent had removed Wirelace.
	Reinserts int `json:"reinserts"`
	// Updated is when State, Message, Conflist or Reinserts last changed,
	// in RFC 3339.
	Updated string `json:"updated"`
}

// InstallState is the installer's state.
type InstallState string

// The installer's states.
const (
	// InstallInstalled: Wirelace is in the CNI configuration.
	InstallInstalled InstallState = "installed"
	// InstallConflict: another agent (a primary CNI in exclusive mode)
	// keeps removing Wirelace and the installer stopped writing; Message
	// says how to fix it.
	InstallConflict InstallState = "conflict"
	// InstallUninstalled: --uninstall restored the configuration.
	InstallUninstalled InstallState = "uninstalled"
	// InstallError: the last attempt failed; Message says why.
	InstallError InstallState = "error"
)

// ReadInstallStatus reads wirelace-install's status file.
func ReadInstallStatus(path string) (InstallStatus, error) {
	var s InstallStatus
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("install status %s: %w", path, err)
	}
	return s, nil
}

// RelayStatus is this node's connection to one relay.
type RelayStatus struct {
	Addr      string `json:"addr"`
	Connected bool   `json:"connected"`
	Error     string `json:"error,omitempty"`
}

// PeerStatus is one WireGuard peer as the device sees it.
type PeerStatus struct {
	Node      string `json:"node"`
	PublicKey string `json:"publicKey"`
	// Path is how packets reach the peer now: "direct", "relay" or
	// "direct+relay" (while a direct path is unconfirmed); PathAddr is the
	// direct address, PathReason why this path (NAT types, last probe).
	Path       string `json:"path,omitempty"`
	PathAddr   string `json:"pathAddr,omitempty"`
	PathReason string `json:"pathReason,omitempty"`
	NATType    string `json:"natType,omitempty"`
	// Endpoint is the endpoint WireGuard holds: a virtual one when the
	// daemon chooses paths (see Path for the real one).
	Endpoint      string     `json:"endpoint,omitempty"`
	AllowedIPs    []string   `json:"allowedIPs"`
	LastHandshake *time.Time `json:"lastHandshake,omitempty"`
	RxBytes       int64      `json:"rxBytes"`
	TxBytes       int64      `json:"txBytes"`
}

// Error is the body of every non-2xx answer of the local API.
type Error struct {
	Error string `json:"error"`
}
