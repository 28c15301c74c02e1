// Package cniinstall is wirelace-install, the DaemonSet's install step: it
// copies the CNI plugin binaries into the node's CNI bin dir and writes
// Wirelace into the node's CNI configuration, either as its own network
// (standalone) or as the last plugin of the primary CNI's chain (chained),
// then watches the configuration and puts Wirelace back when the primary
// rewrites its file, without ever fighting it.
//
// The logic is pure where it can be: conflist.go edits CNI configurations
// as functions over bytes (a token scan finds where to splice, so nothing of
// the primary's file is re-marshalled), primary.go picks the file a runtime
// loads, and guard.go decides, from timestamps it is given, when a re-insert
// may be written and when the installer must stop because another agent
// keeps removing Wirelace. The side effects are apart: files.go (atomic
// writes), binaries.go (binary copy), state.go (backups), status.go (the
// status file the node daemon reads), event.go (the Kubernetes Event), and
// installer.go, which drives them.
package cniinstall
