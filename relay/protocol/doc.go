// Package protocol is the wire format between wirelaced and wirelace-relay.
//
// Everything travels as frames over one byte stream (TCP, optionally TLS):
//
//	+--------+----------------------+-----------------+
//	| type:1 | length:4 (big endian)| payload:length  |
//	+--------+----------------------+-----------------+
//
// The relay carries ordinary WireGuard datagrams, never GSO super-packets, so
// a payload is at most a 32-byte key plus a 65535-byte datagram
// (MaxPayloadLen). A longer length is a protocol error and the connection is
// closed before any of the payload is read; that keeps a hostile peer from
// making either side buffer more than one maximum frame.
//
// A session starts with a handshake, then carries packets:
//
//	server → client  ServerHello   magic "WIRELACE", version, ephemeral key, challenge
//	client → server  ClientAuth    WireGuard key, control key, nonce, proof
//	server → client  ServerAuthOK  idle timeout   (or ServerAuthError reason, then close)
//	client → server  SendPacket    destination key, WireGuard datagram
//	server → client  RecvPacket    source key, WireGuard datagram
//	either way       KeepAlive     (empty)
//	server → client  PeerGone      key of a destination the relay cannot reach
//	server → client  ServerClose   reason, just before the relay closes the session
//
// See handshake.go for why the proof convinces the relay that the client
// holds the control private key of the MeshNode it claims to be.
package protocol
