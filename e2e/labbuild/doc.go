// Package labbuild builds what the Wirelace lab runs besides Wirelace:
// kube-apiserver and etcd; kubelet, kube-controller-manager,
// kube-scheduler, kubectl, containerd and the CNI loopback plugin for real
// Kubernetes nodes; and helm.
//
// The lab machine has no Docker and no package with these binaries, only the
// Go module proxy, so EnsureBinaries, EnsureNodeBinaries and EnsureHelm
// build them from source, all in one wrapper module (see labmodule.go), into
// a cache directory, and reuse them while their stamp matches. The package
// needs nothing but the go command: make test compiles it in seconds and
// starts these builds, the longest part of a cold run, at once.
package labbuild
