package node

import (
	"errors"
	"io/fs"
	"time"

	"github.com/wirelace/wirelace/netconf"
)

// Status implements api.Backend: the daemon's readiness and, with peers,
// its peers as the WireGuard device reports them right now.
func (d *Daemon) Status(withPeers bool) netconf.Status {
	d.mu.Lock()
	s := netconf.Status{
		Ready:      d.ready,
		Reason:     d.reason,
		Node:       d.cfg.NodeName,
		Interface:  d.cfg.Interface,
		ListenPort: d.cfg.ListenPort,
		MTU:        d.mtu,
		Endpoints:  append([]string(nil), d.endpoints...),
		Peers:      []netconf.PeerStatus{},
	}
	names := d.peerNames
	dev, relays, paths := d.dev, d.relays, d.paths
	s.NATType, s.NATReason = string(d.nat.Type), d.nat.Reason
	if d.portRival != "" {
		s.NATReason += "; " + d.portRival
	}
	for _, a := range d.meshIPs {
		s.MeshIPs = append(s.MeshIPs, a.String())
	}
	d.mu.Unlock()

	if d.keys.WireGuard != [32]byte{} {
		s.PublicKey = d.keys.WireGuard.PublicKey().String()
	}
	if relays != nil {
		s.Relays = relays.status()
	}
	s.Install = d.installStatus()
	if dev == nil || !withPeers {
		return s
	}
	peers, err := dev.Peers()
	if err != nil {
		s.Ready, s.Reason = false, "cannot read the WireGuard device: "+err.Error()
		return s
	}
	for _, p := range peers {
		ps := netconf.PeerStatus{
			Node:      names[p.PublicKey.String()],
			PublicKey: p.PublicKey.String(),
			RxBytes:   p.ReceiveBytes,
			TxBytes:   p.TransmitBytes,
		}
		if p.Endpoint != nil {
			ps.Endpoint = p.Endpoint.String()
		}
		for _, n := range p.AllowedIPs {
			ps.AllowedIPs = append(ps.AllowedIPs, n.String())
		}
		if !p.LastHandshakeTime.IsZero() {
			t := p.LastHandshakeTime.UTC().Truncate(time.Second)
			ps.LastHandshake = &t
		}
		s.Peers = append(s.Peers, ps)
	}
	if paths != nil {
		paths.status(s.Peers)
	}
	return s
}

// installStatus reads wirelace-install's status file, if there is one. A
// file that does not decode is shown as such rather than hidden.
func (d *Daemon) installStatus() *netconf.InstallStatus {
	if d.cfg.InstallStatusFile == "" {
		return nil
	}
	st, err := netconf.ReadInstallStatus(d.cfg.InstallStatusFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &netconf.InstallStatus{State: netconf.InstallError, Message: err.Error()}
	}
	return &st
}
