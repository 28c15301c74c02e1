// Package vocab holds the words Wirelace's packages share: a node's NAT type,
// the kind of an endpoint candidate, and the name of the path a peer's
// packets take. The MeshNode API (api/v1alpha1), the path machine
// (daemon/path), the NAT classifier (daemon/nat), the local API and the
// metrics all speak them, so they live here once.
//
// It imports nothing but the standard library, and must stay that way: the
// pure packages (daemon/path, daemon/mesh, daemon/nat's decision table)
// import it, and what it pulls in they pull in (see deps_test.go).
package vocab
