// Package lab builds a Wirelace test cluster out of network namespaces on
// one machine: an "internet" namespace holding a bridge and a real
// kube-apiserver + etcd, and one namespace per node running the real
// wirelaced, each in a private mount namespace so /run/wireguard is its own.
//
// Every resource carries a per-run prefix (wl + 4 hex digits), so two runs
// never collide, and Close removes all of it. A run that died without
// closing is swept by the next run.
package lab
