// Command versionbin prints its version: the binary the atomic-copy test
// replaces while executing it. Built twice with -ldflags -X main.version=….
package main

import "os"

var version = "dev"

func main() { os.Stdout.WriteString(version + "\n") }
