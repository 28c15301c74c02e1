// Package device runs the node's userspace WireGuard device (wireguard-go) on a
// persistent TUN, so that the link and its routes survive a daemon restart.
package device

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Device is a running wireguard-go device on a persistent TUN.
type Device struct {
	name  string
	index int
	log   *slog.Logger

	wg       *device.Device
	uapi     net.Listener
	uapiDone chan struct{} // closed when serveUAPI returns
	client   *wgctrl.Client

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open creates the TUN, or re-attaches to a persistent one left by an earlier
// run (keeping its addresses and routes), marks it persistent, starts
// wireguard-go on it with bind b, serves the UAPI socket at
// /var/run/wireguard/<Name>.sock so that `wg show <Name>` works, configures the
// private key, listen port and fwmark through wgctrl, sets the MTU and brings
// the link up.
//
// The UDP socket is opened in the network namespace of the process, whatever
// the calling thread's.
//
// If Open fails, it undoes what it did: a link it created is deleted; a link
// that existed before is left in place.
func Open(cfg Config, b conn.Bind) (_ *Device, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("wireguard device config: %w", err)
	}
	if b == nil {
		return nil, errors.New("wireguard device: bind is nil")
	}
	log := cfg.Logger.With("device", cfg.Name)

	existing, err := existingTUN(cfg.Name)
	if err != nil {
		return nil, err
	}
	reattach := existing != nil

	d := &Device{name: cfg.Name, log: log}
	defer func() {
		if err == nil {
			return
		}
		d.stop()
		if !reattach {
			if derr := Delete(cfg.Name); derr != nil {
				log.Error("could not delete the link of a failed open", "err", derr)
			}
		}
	}()

	f, err := openTUN(cfg.Name)
	if err != nil {
		return nil, err
	}
	// CreateTUNFromFile sets the MTU, turns on the offloads (TUNSETOFFLOAD) and
	// watches the link's state.
	t, err := tun.CreateTUNFromFile(f, cfg.MTU)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("set up TUN %q: %w", cfg.Name, err)
	}
	// From here on, d.wg owns t and closing d.wg closes it.
	d.wg = device.NewDevice(t, b, wgLogger(log))
	if cfg.FixedEndpoints {
		// Applies to peers configured from now on (the device has none yet).
		d.wg.DisableSomeRoamingForBrokenMobileSemantics()
	}

	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("look up link %q: %w", cfg.Name, err)
	}
	d.index = link.Attrs().Index

	d.uapi, err = listenUAPI(cfg.Name)
	if err != nil {
		return nil, err
	}
	d.uapiDone = make(chan struct{})
	go d.serveUAPI()

	d.client, err = wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("open wgctrl client: %w", err)
	}
	err = d.Configure(wgtypes.Config{
		PrivateKey:   &cfg.PrivateKey,
		ListenPort:   &cfg.ListenPort,
		FirewallMark: &cfg.FwMark,
	})
	if err != nil {
		// wgctrl reports only an errno (-98 is EADDRINUSE); wireguard-go logs
		// the full cause.
		return nil, fmt.Errorf("set private key, listen port %d and fwmark %d: %w", cfg.ListenPort, cfg.FwMark, err)
	}

	// On re-attach the link is normally up already; setting it down here would
	// delete its routes, so it is only ever set up.
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set link %q up: %w", cfg.Name, err)
	}
	// wireguard-go brings itself up when it sees the link up, but on a
	// goroutine that only logs failures. Doing it here as well (Up is
	// idempotent) makes a failure to open the UDP socket, such as a port in
	// use, an error of Open.
	if err := d.wg.Up(); err != nil {
		return nil, fmt.Errorf("bring wireguard device %q up: %w", cfg.Name, err)
	}
	// A failed bring-up resets wireguard-go's port to 0. When its own
	// goroutine tried first and failed (the port in use), the Up above
	// opened a random port and succeeded: peers would be told a port no
	// one listens on.
	if cfg.ListenPort != 0 {
		dev, err := d.client.Device(cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("read wireguard device %q: %w", cfg.Name, err)
		}
		if dev.ListenPort != cfg.ListenPort {
			return nil, fmt.Errorf("bring wireguard device %q up: UDP port %d is in use (wireguard-go logged the cause)", cfg.Name, cfg.ListenPort)
		}
	}

	log.Info("wireguard device open",
		"index", d.index, "mtu", cfg.MTU, "listen_port", cfg.ListenPort,
		"fwmark", cfg.FwMark, "reattached", reattach)
	return d, nil
}

// Close stops wireguard-go (which closes the bind) and the UAPI socket. The
// persistent link stays, with its addresses and routes; it has no carrier until
// the next Open, so packets routed to it are dropped rather than leaving some
// other way. Close may be called more than once.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.closeErr = d.stop()
		d.log.Info("wireguard device closed; link kept")
	})
	return d.closeErr
}

// stop releases whatever Open has set up so far; Open calls it directly when
// it fails.
func (d *Device) stop() error {
	d.closing.Store(true)
	var errs []error
	if d.uapi != nil {
		if err := d.uapi.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close UAPI socket: %w", err))
		}
		<-d.uapiDone
	}
	if d.wg != nil {
		d.wg.Close()
	}
	if d.client != nil {
		if err := d.client.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close wgctrl client: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Index returns the interface index of the link.
func (d *Device) Index() int {
	return d.index
}

// Traffic returns the bytes the link has received and sent, from the
// kernel's counters: one netlink request, whatever the number of peers
// (Peers reads every peer's).
func (d *Device) Traffic() (uint64, error) {
	link, err := netlink.LinkByIndex(d.index)
	if err != nil {
		return 0, fmt.Errorf("read counters of %q: %w", d.name, err)
	}
	st := link.Attrs().Statistics
	if st == nil {
		return 0, fmt.Errorf("read counters of %q: none reported", d.name)
	}
	return st.RxBytes + st.TxBytes, nil
}

// Peers returns the device's peers, with their handshake times and counters.
func (d *Device) Peers() ([]wgtypes.Peer, error) {
	dev, err := d.client.Device(d.name)
	if err != nil {
		return nil, fmt.Errorf("read wireguard device %q: %w", d.name, err)
	}
	return dev.Peers, nil
}

// Configure applies cfg to the device, as `wg set` would.
func (d *Device) Configure(cfg wgtypes.Config) error {
	if err := d.client.ConfigureDevice(d.name, cfg); err != nil {
		return fmt.Errorf("configure wireguard device %q: %w", d.name, err)
	}
	return nil
}
