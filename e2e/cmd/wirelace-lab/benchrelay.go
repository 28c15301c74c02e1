package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/wirelace/wirelace/e2e/lab"
)

// relayPID finds the wirelace-relay process of r by its command line (its
// kubeconfig path is unique to the lab and the relay). The lab starts it
// through `ip netns exec`, which execs, so this is the relay itself.
func relayPID(r *lab.Relay) (int, error) {
	want := []byte(r.Kubeconfig)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("find relay %s: %w", r.Name, err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(cmd, []byte{0})
		if len(args) > 0 && filepath.Base(string(args[0])) == "wirelace-relay" && bytes.Contains(cmd, want) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("find relay %s: no wirelace-relay process with kubeconfig %s", r.Name, r.Kubeconfig)
}
