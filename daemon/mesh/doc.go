// Package mesh is the mesh topology as pure data: which peers a node should
// have, with which allowed IPs and endpoints, and what has to change to get
// from the device's actual state to that. Nothing here touches a kernel, a
// socket or the API server, so all of it is testable as plain functions.
package mesh
