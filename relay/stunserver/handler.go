package stunserver

import (
	"net/netip"

	"github.com/pion/stun/v3"

	"github.com/wirelace/wirelace/internal/netipx"
	"github.com/wirelace/wirelace/internal/stunattr"
)

// handler answers the requests of one socket. It reuses its messages, so it
// belongs to that socket's goroutine.
type handler struct {
	s    *Server
	sock *socket
	req  stun.Message
	resp stun.Message
}

func newHandler(s *Server, sock *socket) *handler {
	return &handler{s: s, sock: sock}
}

// knownRequired are the comprehension-required attributes the server
// accepts in a Binding request; any other makes it answer 420 (RFC 5389
// section 7.3.1). It does no authentication, so USERNAME and
// MESSAGE-INTEGRITY are ignored rather than refused. CHANGE-REQUEST is known
// only when an alternate address makes it possible.
func (h *handler) knownRequired(t stun.AttrType) bool {
	switch t {
	case stun.AttrUsername, stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256, stun.AttrPadding:
		return true
	case stun.AttrChangeRequest:
		return h.s.rfc5780
	}
	return false
}

func (h *handler) handle(data []byte, from netip.AddrPort) {
	from = netipx.UnmapAddrPort(from)
	if !stun.IsMessage(data) {
		h.s.metrics.requests.WithLabelValues(resultIgnored).Inc()
		return
	}
	h.req.Raw = append(h.req.Raw[:0], data...)
	if err := h.req.Decode(); err != nil {
		h.s.metrics.requests.WithLabelValues(resultIgnored).Inc()
		h.s.log.Debug("STUN: undecodable message", "remote", from.String(), "err", err)
		return
	}
	if h.req.Type != stun.BindingRequest {
		// Indications and responses get no answer; neither do other
		// methods, which this server does not serve.
		h.s.metrics.requests.WithLabelValues(resultIgnored).Inc()
		return
	}

	var unknown stun.UnknownAttributes
	for _, a := range h.req.Attributes {
		if a.Type.Required() && !h.knownRequired(a.Type) {
			unknown = append(unknown, a.Type)
		}
	}
	if len(unknown) > 0 {
		h.reply(h.sock, from, resultUnknownAttr, stun.BindingError, stun.CodeUnknownAttribute, unknown)
		return
	}

	// Where the answer comes from: the socket the request came in on,
	// unless CHANGE-REQUEST asks otherwise.
	out, result := h.sock, resultOK
	if h.req.Contains(stun.AttrChangeRequest) {
		var cr stunattr.ChangeRequest
		if err := cr.GetFrom(&h.req); err != nil {
			h.reply(h.sock, from, resultBadRequest, stun.BindingError, stun.CodeBadRequest)
			return
		}
		target, ok := h.changed(cr)
		if !ok {
			// The change needs an IP or port the server does not have.
			h.reply(h.sock, from, resultUnknownAttr, stun.BindingError, stun.CodeUnknownAttribute,
				stun.UnknownAttributes{stun.AttrChangeRequest})
			return
		}
		if target != h.sock {
			out, result = target, resultChanged
		}
	}

	setters := []stun.Setter{
		stun.BindingSuccess,
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
	}
	if origin := out.addr; !origin.Addr().IsUnspecified() {
		setters = append(setters, &stun.ResponseOrigin{IP: origin.Addr().AsSlice(), Port: int(origin.Port())})
	}
	if h.s.rfc5780 {
		o := h.s.other(out.addr)
		setters = append(setters, &stun.OtherAddress{IP: o.Addr().AsSlice(), Port: int(o.Port())})
	}
	h.reply(out, from, result, setters...)
}

// changed returns the socket a CHANGE-REQUEST asks to answer from.
func (h *handler) changed(cr stunattr.ChangeRequest) (*socket, bool) {
	ip, port := h.sock.addr.Addr(), h.sock.addr.Port()
	if cr.ChangeIP {
		var ok bool
		if ip, ok = h.s.otherIP(ip); !ok {
			return nil, false
		}
	}
	if cr.ChangePort {
		var ok bool
		if port, ok = h.s.otherPort(port); !ok {
			return nil, false
		}
	}
	sock, ok := h.s.sockets[netip.AddrPortFrom(ip, port)]
	return sock, ok
}

// reply builds a response to the current request from setters and sends it
// from sock. A FINGERPRINT is added when the request had one.
func (h *handler) reply(sock *socket, to netip.AddrPort, result string, setters ...stun.Setter) {
	all := append([]stun.Setter{stun.NewTransactionIDSetter(h.req.TransactionID)}, setters...)
	if h.req.Contains(stun.AttrFingerprint) {
		all = append(all, stun.Fingerprint)
	}
	if err := h.resp.Build(all...); err != nil {
		h.s.log.Warn("STUN: cannot build response", "remote", to.String(), "err", err)
		return
	}
	if _, err := sock.conn.WriteToUDPAddrPort(h.resp.Raw, to); err != nil {
		h.s.log.Debug("STUN: cannot send response", "remote", to.String(), "from", sock.addr.String(), "err", err)
		return
	}
	h.s.metrics.requests.WithLabelValues(result).Inc()
}
