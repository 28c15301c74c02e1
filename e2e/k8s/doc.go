// Package k8s runs a real Kubernetes control plane (etcd + kube-apiserver,
// and on request kube-controller-manager and kube-scheduler) for the
// Wirelace test lab.
//
// Start runs the binaries package labbuild built, optionally inside a lab
// network namespace, with a throwaway PKI and static tokens. Without
// Options.Controllers the lab's own daemons play the nodes and the API
// server only has to store and serve objects; with it, kubelet nodes
// register themselves and DaemonSets, Deployments and scheduling work as in
// a real cluster.
package k8s
