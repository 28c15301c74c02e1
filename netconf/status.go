package netconf

import "time"

// DefaultSocket is where wirelaced serves its local API.
const DefaultSocket = "/run/wirelace/wirelaced.sock"

// StatusPath is the local API path of the daemon's status.
const StatusPath = "/v1/status"

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
	// State is "installed", "conflict" (the primary CNI keeps removing
	// wirelace from its config; the installer stopped re-inserting),
	// "uninstalled" or "error".
	State     string `json:"state"`
	Message   string `json:"message,omitempty"`
	Conflist  string `json:"conflist,omitempty"`
	Reinserts int    `json:"reinserts,omitempty"`
	Updated   string `json:"updated,omitempty"`
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
