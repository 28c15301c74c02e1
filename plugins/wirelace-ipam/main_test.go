package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/wirelace/wirelace/plugins/internal/testenv"
)

// binDir holds wirelace-ipam and the reference ptp plugin, built once for
// the package (ptp from the module cache, at the version go.mod requires).
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wirelace-ipam-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := testenv.Build(dir, testenv.WirelaceIPAM, testenv.PTP); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}
