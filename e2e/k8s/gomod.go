package k8s

import (
	"bytes"
	"fmt"
	"path"
	"strings"
)

// k8s.io/kubernetes cannot be built with `go install pkg@version`: its go.mod
// points every k8s.io/* staging module at ./staging/src/..., and replace
// directives of a dependency are ignored. The published staging modules carry
// the same code under version v0.<minor>.<patch>, so a wrapper module that
// requires k8s.io/kubernetes and re-creates the replace block with those
// versions builds the same kube-apiserver as upstream. The functions here turn
// kubernetes' go.mod text into that wrapper go.mod; they are pure so they can
// be unit tested without the network.

// directive is one go.mod directive with its block verb resolved, e.g.
// {verb: "replace", args: ["k8s.io/api", "=>", "./staging/src/k8s.io/api"]}.
type directive struct {
	verb string
	args []string
	line int
}

// parseGoModDirectives splits go.mod text into directives. It understands
// comments, single-line directives and `verb ( ... )` blocks, which is all
// the structure the go.mod grammar has; quoted paths are not used by
// kubernetes and are rejected rather than misread.
func parseGoModDirectives(gomod []byte) ([]directive, error) {
	var out []directive
	block := ""
	for i, raw := range strings.Split(string(gomod), "\n") {
		lineNo := i + 1
		line := raw
		if j := strings.Index(line, "//"); j >= 0 {
			line = line[:j]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if strings.ContainsAny(line, "\"`") {
			return nil, fmt.Errorf("go.mod line %d: quoted strings are not supported: %q", lineNo, raw)
		}
		if block != "" {
			if len(fields) == 1 && fields[0] == ")" {
				block = ""
				continue
			}
			out = append(out, directive{verb: block, args: fields, line: lineNo})
			continue
		}
		if len(fields) == 2 && fields[1] == "(" {
			block = fields[0]
			continue
		}
		out = append(out, directive{verb: fields[0], args: fields[1:], line: lineNo})
	}
	if block != "" {
		return nil, fmt.Errorf("go.mod: unterminated %q block", block)
	}
	return out, nil
}

// stagingVersion maps a kubernetes release (v1.37.2) to the version its
// staging modules are published under (v0.37.2).
func stagingVersion(kubeVersion string) (string, error) {
	rest, ok := strings.CutPrefix(kubeVersion, "v1.")
	if !ok || rest == "" {
		return "", fmt.Errorf("kubernetes version %q does not look like v1.X.Y", kubeVersion)
	}
	return "v0." + rest, nil
}

// isLocalPath reports whether a replace target is a directory rather than a
// module path, using the same rule as cmd/go.
func isLocalPath(p string) bool {
	return strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/") ||
		p == "." || p == ".."
}

// replaceLines converts kubernetes' replace directives into lines for the
// wrapper module:
//   - k8s.io/X => ./staging/src/k8s.io/X becomes k8s.io/X => k8s.io/X <staging version>;
//   - k8s.io/sample-* staging modules are dropped: they are examples that are
//     not needed by any binary and are not all published;
//   - replacements by another module version are copied verbatim, so the
//     wrapper pins exactly what upstream builds with;
//   - any other directory replacement is an error, as nothing on the module
//     proxy could stand in for it.
func replaceLines(dirs []directive, stagingVer string) ([]string, error) {
	var out []string
	for _, d := range dirs {
		if d.verb != "replace" {
			continue
		}
		arrow := -1
		for i, a := range d.args {
			if a == "=>" {
				arrow = i
			}
		}
		if arrow < 1 || arrow > 2 || len(d.args)-arrow-1 < 1 || len(d.args)-arrow-1 > 2 {
			return nil, fmt.Errorf("go.mod line %d: malformed replace %q", d.line, strings.Join(d.args, " "))
		}
		from, target := d.args[0], d.args[arrow+1]
		if !isLocalPath(target) {
			out = append(out, strings.Join(d.args, " "))
			continue
		}
		if path.Clean(target) != path.Clean("./staging/src/"+from) || !strings.HasPrefix(from, "k8s.io/") {
			return nil, fmt.Errorf("go.mod line %d: replace %s => %s points at a directory that is not a staging module", d.line, from, target)
		}
		if strings.HasPrefix(path.Base(from), "sample-") {
			continue
		}
		out = append(out, fmt.Sprintf("%s => %s %s", from, from, stagingVer))
	}
	return out, nil
}

// wrapperGoMod returns the go.mod of the wrapper module that builds binaries
// of k8s.io/kubernetes at kubeVersion, given the text of kubernetes' own
// go.mod. It keeps kubernetes' go and godebug lines so the binaries get the
// same language version and GODEBUG defaults as an upstream build.
func wrapperGoMod(module string, kubeGoMod []byte, kubeVersion string) ([]byte, error) {
	sv, err := stagingVersion(kubeVersion)
	if err != nil {
		return nil, err
	}
	dirs, err := parseGoModDirectives(kubeGoMod)
	if err != nil {
		return nil, fmt.Errorf("parse kubernetes go.mod: %w", err)
	}
	goVersion := ""
	var godebug []string
	for _, d := range dirs {
		switch d.verb {
		case "module":
			if len(d.args) != 1 || d.args[0] != "k8s.io/kubernetes" {
				return nil, fmt.Errorf("go.mod line %d: expected module k8s.io/kubernetes, got %q", d.line, strings.Join(d.args, " "))
			}
		case "go":
			if len(d.args) == 1 {
				goVersion = d.args[0]
			}
		case "godebug":
			godebug = append(godebug, strings.Join(d.args, " "))
		}
	}
	if goVersion == "" {
		return nil, fmt.Errorf("kubernetes go.mod has no go directive")
	}
	replaces, err := replaceLines(dirs, sv)
	if err != nil {
		return nil, err
	}
	if len(replaces) == 0 {
		return nil, fmt.Errorf("kubernetes go.mod has no staging replace directives; format changed?")
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "// Generated by github.com/wirelace/wirelace/e2e/k8s; do not edit.\n")
	fmt.Fprintf(&b, "module %s\n\ngo %s\n\n", module, goVersion)
	for _, g := range godebug {
		fmt.Fprintf(&b, "godebug %s\n", g)
	}
	if len(godebug) > 0 {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "require k8s.io/kubernetes %s\n\nreplace (\n", kubeVersion)
	for _, r := range replaces {
		fmt.Fprintf(&b, "\t%s\n", r)
	}
	b.WriteString(")\n")
	return b.Bytes(), nil
}
