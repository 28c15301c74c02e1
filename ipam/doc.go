// Package ipam is the node daemon's pod address allocator.
//
// The CNI plugins hold no state: every allocation lives here, in a bbolt
// database under the daemon's state directory, so that a plugin crash, a
// daemon restart or a node reboot never hands the same address to two pods
// and never forgets one that is in use. Each operation is a single bbolt
// write transaction, which is both the unit of atomicity (a dual-stack
// allocation gets both addresses or neither) and of crash safety (bbolt
// fsyncs before Commit returns).
//
// Database layout (schema version 1):
//
//	meta         "schema"  -> "1"
//	             "ranges"  -> JSON list of the node's pod CIDRs, e.g. ["10.244.1.0/24","fd00:10:244:1::/64"]
//	cursors      "<CIDR>"  -> address bytes of the last address handed out in that range
//	allocations  "<containerID>/<ifName>" -> JSON record (key, owner, addresses, created)
//	used4        4-byte IPv4 address  -> "<containerID>/<ifName>"
//	used6        16-byte IPv6 address -> "<containerID>/<ifName>"
//
// The used-address indexes are per address family rather than per range so
// that an address stays taken whatever the ranges become: after a pod CIDR
// change (even to an overlapping one) an address still held by an old
// allocation can never be handed out again. Their keys sort as the addresses
// do, so finding the next free address is a B+tree seek plus a walk over the
// run of taken addresses that follows, never a scan of the range.
//
// Invariant, kept within every transaction and checked by Open: each address
// of each allocation has an index entry naming that allocation, and each
// index entry names an allocation that holds its address.
package ipam
