// Package netconf is the contract between Wirelace's parts: the CNI network
// configuration the plugins read, and the local API the daemon serves to the
// plugins and to wirelacectl over its unix socket.
package netconf
