package device

import (
	"fmt"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// StartHandshake has WireGuard send the peer a handshake initiation now,
// as it would for a first packet. WireGuard itself declines if it sent one
// (or a response) within its rekey timeout (5 s); so this helps only a
// side that has not tried yet.
func (d *Device) StartHandshake(key wgtypes.Key) error {
	p, err := d.peer(key)
	if err != nil {
		return err
	}
	return p.SendHandshakeInitiation(false)
}

// RestartHandshake has WireGuard drop whatever handshake it has in flight
// with the peer, and its sessions, and send a new initiation now, even
// within the rekey timeout: for a peer whose side has none of them (its
// own initiation and ours were both lost), where StartHandshake would
// wait out the 5 s. Expiring is what lets WireGuard initiate again at once
// (it also clears the time of the last initiation); a response to the
// dropped initiation is then ignored, as WireGuard ignores any stale one.
func (d *Device) RestartHandshake(key wgtypes.Key) error {
	p, err := d.peer(key)
	if err != nil {
		return err
	}
	p.ExpireCurrentKeypairs()
	return p.SendHandshakeInitiation(false)
}

func (d *Device) peer(key wgtypes.Key) (*device.Peer, error) {
	p := d.wg.LookupPeer(device.NoisePublicKey(key))
	if p == nil {
		return nil, fmt.Errorf("wireguard device %q has no peer %s", d.name, key)
	}
	return p, nil
}
