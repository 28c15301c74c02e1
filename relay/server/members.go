package server

import "golang.zx2c4.com/wireguard/wgctrl/wgtypes"

// Members decides who the relay serves: the nodes of the mesh. Lookup
// returns the control public key of the member whose WireGuard public key
// is wgKey, and false when no member (or, ambiguously, more than one) has
// that key. (For membership.Kube a member is a MeshNode whose Node exists.) It
// is called on every handshake and must be fast and safe for concurrent use.
type Members interface {
	Lookup(wgKey wgtypes.Key) (controlKey wgtypes.Key, ok bool)
}

// ChangeNotifier is implemented by Members that can say when membership
// changed. New subscribes the Server, which then re-checks every connected
// client and closes those no longer entitled to their session; Members that
// do not implement it can call Server.MembersChanged themselves.
type ChangeNotifier interface {
	Subscribe(changed func())
}
