package stunserver

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"

	"github.com/wirelace/wirelace/internal/stunattr"
)

// FuzzHandle feeds arbitrary datagrams to the STUN handler of a server with
// RFC 5780 on (two IPs, two ports, four sockets), as its socket goroutine
// would. It must not crash, and whatever it answers must be a well-formed
// STUN response to the request's transaction.
func FuzzHandle(f *testing.F) {
	s, err := Listen(Config{Listen: "127.0.0.1:0", AltListen: "127.0.0.2:0"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	// Answers go to a socket nobody reads: the kernel drops them once its
	// buffer is full, which is all a fuzz run needs.
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { sink.Close() })
	from := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	h := newHandler(s, s.primary)

	tx := stun.NewTransactionIDSetter([stun.TransactionIDSize]byte{'w', 'i', 'r', 'e', 'l', 'a', 'c', 'e'})
	seed := func(setters ...stun.Setter) {
		f.Add(stun.MustBuild(append([]stun.Setter{tx}, setters...)...).Raw)
	}
	seed(stun.BindingRequest)
	seed(stun.BindingRequest, stun.Fingerprint)
	seed(stun.BindingRequest, stunattr.ChangeRequest{ChangeIP: true, ChangePort: true}, stun.Fingerprint)
	seed(stun.BindingRequest, stunattr.ChangeRequest{ChangePort: true})
	seed(stun.BindingRequest, stun.NewUsername("user"), stun.NewShortTermIntegrity("pass"))
	seed(stun.BindingRequest, stun.RawAttribute{Type: 0x0042, Value: []byte{1, 2, 3}}) // unknown, comprehension-required
	seed(stun.NewType(stun.MethodBinding, stun.ClassIndication))
	seed(stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4(192, 0, 2, 1), Port: 4242})
	f.Add([]byte{0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42}) // a header cut short

	f.Fuzz(func(t *testing.T, data []byte) {
		h.req.Reset()
		h.resp.Reset()
		h.handle(data, netip.AddrPortFrom(from.Addr(), from.Port()))
		if len(h.resp.Raw) == 0 {
			return // not answered
		}
		var resp stun.Message
		resp.Raw = append([]byte(nil), h.resp.Raw...)
		if err := resp.Decode(); err != nil {
			t.Fatalf("answer does not decode: %v", err)
		}
		if resp.TransactionID != h.req.TransactionID {
			t.Fatalf("answer to transaction %x carries %x", h.req.TransactionID, resp.TransactionID)
		}
		if resp.Type != stun.BindingSuccess && resp.Type != stun.BindingError {
			t.Fatalf("answered with %v", resp.Type)
		}
	})
}
