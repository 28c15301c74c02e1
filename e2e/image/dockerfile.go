// Package image builds the lab's copy of the Wirelace container image from
// `make build` output, without Docker: the same files at the same paths,
// the same ENTRYPOINT and ENV as the top-level Dockerfile's final stage,
// written as a docker-save tarball that `ctr -n k8s.io images import` and
// `kind load image-archive` accept.
//
// The Dockerfile is the one place that says what the image holds: this
// package parses its final stage rather than keeping a second list.
package image

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
)

// Spec is what the Dockerfile's final stage puts into the image.
type Spec struct {
	// Files are the binaries copied from the build stage, in Dockerfile
	// order.
	Files []File
	// Env holds the ENV lines as KEY=value.
	Env []string
	// Entrypoint is the exec form of ENTRYPOINT.
	Entrypoint []string
}

// File is one binary: its name in the build stage's output (the name `go
// build` gives it, as in bin/) and its absolute path in the image.
type File struct {
	Name string
	Path string
}

// Paths returns the image paths of s.Files.
func (s Spec) Paths() []string {
	out := make([]string, len(s.Files))
	for i, f := range s.Files {
		out[i] = f.Path
	}
	return out
}

// ParseDockerfile reads the final stage of a Dockerfile of this
// repository's shape. It understands comments, line continuations, FROM,
// COPY --from=<stage> (one or more sources into a directory ending in / or
// one source onto a file path), ENV KEY=value and exec-form ENTRYPOINT,
// and refuses anything in the final stage it does not understand (RUN,
// ADD, a shell-form ENTRYPOINT, COPY from the build context), so that the
// lab image can never silently differ from the real one.
func ParseDockerfile(r io.Reader) (Spec, error) {
	lines, err := logicalLines(r)
	if err != nil {
		return Spec{}, err
	}
	final := -1
	for i, l := range lines {
		if strings.EqualFold(l.instr, "FROM") {
			final = i
		}
	}
	if final < 0 {
		return Spec{}, fmt.Errorf("Dockerfile has no FROM")
	}
	var s Spec
	for _, l := range lines[final+1:] {
		var err error
		switch strings.ToUpper(l.instr) {
		case "COPY":
			err = s.addCopy(l.args)
		case "ENV":
			err = s.addEnv(l.args)
		case "ENTRYPOINT":
			if err = json.Unmarshal([]byte(l.args), &s.Entrypoint); err != nil || len(s.Entrypoint) == 0 {
				err = fmt.Errorf("ENTRYPOINT %s: want the exec form [\"/path\", ...]", l.args)
			}
		case "LABEL", "ARG":
			// Metadata only: no file, no runtime behaviour.
		default:
			err = fmt.Errorf("%s in the final stage: the lab image cannot reproduce it", l.instr)
		}
		if err != nil {
			return Spec{}, fmt.Errorf("Dockerfile line %d: %w", l.line, err)
		}
	}
	if len(s.Files) == 0 || len(s.Entrypoint) == 0 {
		return Spec{}, fmt.Errorf("Dockerfile's final stage has no COPY or no ENTRYPOINT")
	}
	return s, nil
}

func (s *Spec) addCopy(args string) error {
	var srcs []string
	from := ""
	for _, f := range strings.Fields(args) {
		switch {
		case strings.HasPrefix(f, "--from="):
			from = strings.TrimPrefix(f, "--from=")
		case strings.HasPrefix(f, "--"):
			return fmt.Errorf("COPY flag %s is not supported", f)
		default:
			srcs = append(srcs, f)
		}
	}
	if from == "" {
		return fmt.Errorf("COPY without --from: only binaries from the build stage are supported")
	}
	if len(srcs) < 2 {
		return fmt.Errorf("COPY %s: want sources and a destination", args)
	}
	dst := srcs[len(srcs)-1]
	srcs = srcs[:len(srcs)-1]
	if !path.IsAbs(dst) {
		return fmt.Errorf("COPY destination %q: want an absolute path", dst)
	}
	dir := strings.HasSuffix(dst, "/")
	if len(srcs) > 1 && !dir {
		return fmt.Errorf("COPY of %d sources into %q: the destination must end in /", len(srcs), dst)
	}
	for _, src := range srcs {
		if strings.ContainsAny(src, "*?[") {
			return fmt.Errorf("COPY source %q: wildcards are not supported", src)
		}
		f := File{Name: path.Base(src), Path: path.Clean(dst)}
		if dir {
			f.Path = path.Join(dst, f.Name)
		}
		s.Files = append(s.Files, f)
	}
	return nil
}

func (s *Spec) addEnv(args string) error {
	for _, kv := range strings.Fields(args) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(v, "\"'$") {
			return fmt.Errorf("ENV %s: want KEY=value pairs without quotes or variables", args)
		}
		s.Env = append(s.Env, k+"="+v)
	}
	return nil
}

// line is one Dockerfile instruction with its continuation lines joined.
type line struct {
	line  int
	instr string
	args  string
}

func logicalLines(r io.Reader) ([]line, error) {
	var out []line
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || (text == "" && cur.Len() > 0) {
			continue // comments (and parser directives); blank lines inside a continuation
		}
		if text == "" {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		cont := strings.HasSuffix(text, "\\")
		cur.WriteString(strings.TrimSuffix(text, "\\"))
		cur.WriteByte(' ')
		if cont {
			continue
		}
		instr, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, line{line: start, instr: instr, args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("Dockerfile ends inside a line continuation")
	}
	return out, nil
}
