package device

import (
	"fmt"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// StartHandshake has WireGuard send the peer a handshake initiation now,
// as it would for a first packet. WireGuard itself declines if it sent one
// within its rekey timeout (5 s); so this helps only a side that has not
// tried yet, which is what the path manager asks it for: the peer's own
// first initiation was lost before any path worked.
func (d *Device) StartHandshake(key wgtypes.Key) error {
	p := d.wg.LookupPeer(device.NoisePublicKey(key))
	if p == nil {
		return fmt.Errorf("wireguard device %q has no peer %s", d.name, key)
	}
	return p.SendHandshakeInitiation(false)
}
