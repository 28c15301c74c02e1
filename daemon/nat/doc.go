// Package nat learns how the NAT in front of a node behaves, using STUN
// (RFC 5389, and RFC 5780 where the server supports it) from the node's
// WireGuard socket itself: a mapping learnt on any other socket would say
// nothing about the port peers must reach.
//
// The result (open, the cone variants, symmetric, UDP-blocked, unknown) is
// published in the node's MeshNode. It only orders and prunes direct-path
// attempts; connectivity never depends on it, because every peer is
// reachable through the relay first. So when a test is ambiguous the
// classification errs towards the stricter behaviour, which at worst costs a
// useless relay round, never a lost path.
package nat
