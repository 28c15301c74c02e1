// Package k8s runs a real Kubernetes control plane (etcd + kube-apiserver)
// for the Wirelace test lab.
//
// The lab machine has no Docker and no package with these binaries, only the
// Go module proxy, so EnsureBinaries builds them from source into a cache
// directory, and Start runs them, optionally inside a lab network namespace,
// with a throwaway PKI and static tokens. There is no controller-manager,
// scheduler or kubelet: the lab's own daemons play the nodes, and the API
// server only has to store and serve objects.
package k8s
