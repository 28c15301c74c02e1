package cniinstall

import (
	"fmt"
	"slices"
	"strings"
)

// movedAsideSuffix is appended to a single-plugin .conf that chained mode
// converted to a .conflist: runtimes load only .conf, .conflist and .json.
const movedAsideSuffix = ".wirelace-orig"

// isConfFile reports whether a runtime loads the file name from the CNI conf
// dir: libcni's ConfFiles, which containerd and CRI-O call, takes these
// three extensions.
func isConfFile(name string) bool {
	return strings.HasSuffix(name, ".conf") || strings.HasSuffix(name, ".conflist") || strings.HasSuffix(name, ".json")
}

// conflistName is the .conflist chained mode writes for a single-plugin conf:
// the same stem, so it takes the conf's place in the runtime's order once
// the conf is moved aside.
func conflistName(conf string) string {
	return strings.TrimSuffix(strings.TrimSuffix(conf, ".conf"), ".json") + ".conflist"
}

// NoPrimaryError says that the CNI conf dir has no file a runtime would load
// (or not the one asked for).
type NoPrimaryError struct {
	Dir   string
	Want  string   // the --primary-conf asked for, if any
	Found []string // what the dir holds
}

func (e *NoPrimaryError) Error() string {
	found := "it is empty"
	if len(e.Found) > 0 {
		found = "it holds " + strings.Join(e.Found, ", ")
	}
	if e.Want != "" {
		return fmt.Sprintf("primary CNI config %s not found in %s (%s)", e.Want, e.Dir, found)
	}
	return fmt.Sprintf("no primary CNI config in %s: no file ends in .conf, .conflist or .json (%s); install the primary CNI first, or use --mode=standalone", e.Dir, found)
}

// pickPrimary chooses, among the entries of dir, the file a runtime loads:
// the lexicographically first with a CNI config extension, as libcni and
// containerd do; or want when the operator names it. converted maps a conf
// this installer converted to the conflist it wrote, so that naming the
// conf keeps finding the conflist after the conf was moved aside. files
// are the regular files of dir; others are all its entries, for the error.
func pickPrimary(dir string, files, others []string, want string, converted map[string]string) (string, error) {
	if want != "" {
		if slices.Contains(files, want) {
			return want, nil
		}
		if c, ok := converted[want]; ok && slices.Contains(files, c) {
			return c, nil
		}
		return "", &NoPrimaryError{Dir: dir, Want: want, Found: others}
	}
	sorted := slices.Sorted(slices.Values(files))
	for _, f := range sorted {
		if isConfFile(f) {
			return f, nil
		}
	}
	return "", &NoPrimaryError{Dir: dir, Found: others}
}
