package client

import (
	"time"

	"github.com/wirelace/wirelace/relay/protocol"
)

// sessionIdle turns the idle timeout a relay announced into the one this
// client works with: its read timeout, and (divided by keepAliveDivisor) its
// keepalive interval. The announcement comes from the network, so it is
// held to protocol.MinIdleTimeout..MaxIdleTimeout: a relay announcing 1 ms
// would have the node send a KeepAlive every millisecond, one announcing
// weeks would have it never notice the relay is gone. clamped reports that
// the announcement was out of range; zero means none and is not clamped.
func sessionIdle(announced time.Duration) (idle time.Duration, clamped bool) {
	switch {
	case announced <= 0:
		return defaultIdleTimeout, false
	case announced < protocol.MinIdleTimeout:
		return protocol.MinIdleTimeout, true
	case announced > protocol.MaxIdleTimeout:
		return protocol.MaxIdleTimeout, true
	}
	return announced, false
}
