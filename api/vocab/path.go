package vocab

// Path names the way a peer's WireGuard packets take at an instant: what
// `wirelacectl status` shows and what the wirelace_peers metric counts by.
type Path string

// The paths.
const (
	// PathDirect: straight to one of the peer's UDP endpoints.
	PathDirect Path = "direct"
	// PathRelay: through the relays only.
	PathRelay Path = "relay"
	// PathBoth: the direct address is in doubt, so packets go both ways
	// until it is confirmed again or given up (failover loses almost
	// nothing).
	PathBoth Path = "direct+relay"
)

// Paths lists every path, in the order above.
func Paths() []Path { return []Path{PathDirect, PathRelay, PathBoth} }
