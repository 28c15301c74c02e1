package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/wirelace/wirelace/plugins/internal/testenv"
)

// binDir holds the wirelace and wirelace-ipam binaries the tests run, built
// once for the package.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wirelace-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := testenv.Build(dir, testenv.Wirelace, testenv.WirelaceIPAM); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}
