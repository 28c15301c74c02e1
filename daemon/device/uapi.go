package device

import (
	"fmt"
	"net"

	"golang.zx2c4.com/wireguard/ipc"
)

// listenUAPI opens /var/run/wireguard/<name>.sock, the socket through which
// wg(8) and wgctrl talk to a userspace WireGuard device.
func listenUAPI(name string) (net.Listener, error) {
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		return nil, fmt.Errorf("open UAPI socket for %q: %w", name, err)
	}
	// UAPIListen works on a duplicate of f's descriptor, so f itself is done.
	defer f.Close()
	l, err := ipc.UAPIListen(name, f)
	if err != nil {
		return nil, fmt.Errorf("listen on UAPI socket for %q: %w", name, err)
	}
	return l, nil
}

// serveUAPI answers UAPI requests until the listener is closed. It returns
// early if the socket file is deleted: the listener reports that as an error,
// and wg(8) could not find the device any more anyway.
func (d *Device) serveUAPI() {
	defer close(d.uapiDone)
	for {
		c, err := d.uapi.Accept()
		if err != nil {
			if !d.closing.Load() {
				d.log.Error("UAPI socket stopped; wg(8) and wgctrl cannot reach the device", "err", err)
			}
			return
		}
		go d.wg.IpcHandle(c)
	}
}
