// Package relaytest holds what the relay's tests share across packages: a
// node's keys, a client that speaks the relay protocol frame by frame (so
// tests can misbehave), a loopback listener for a server under test, and a
// polling helper. It imports neither the server nor Kubernetes, so the
// server's own tests and the membership tests can both use it.
package relaytest
