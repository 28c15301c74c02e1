// Package kind holds a kind cluster configuration and a script that
// installs Wirelace on it (see README.md); its tests check both without
// Docker.
package kind

import (
	"bufio"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/wirelace/wirelace/daemon/config"
)

// TestKindConfig parses kind.yaml strictly with kind's v1alpha4 types, as
// `kind create cluster --config` does.
func TestKindConfig(t *testing.T) {
	b, err := os.ReadFile("kind.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		t.Fatalf("kind.yaml: %v", err)
	}
	v1alpha4.SetDefaultsCluster(&c)
	if c.Kind != "Cluster" || c.APIVersion != "kind.x-k8s.io/v1alpha4" {
		t.Errorf("kind %q apiVersion %q", c.Kind, c.APIVersion)
	}
	if !c.Networking.DisableDefaultCNI {
		t.Error("disableDefaultCNI is not set: kindnet would be the CNI, not Wirelace")
	}
	roles := map[v1alpha4.NodeRole]int{}
	for _, n := range c.Nodes {
		roles[n.Role]++
	}
	if roles[v1alpha4.ControlPlaneRole] != 1 || roles[v1alpha4.WorkerRole] < 2 {
		t.Errorf("nodes %v: want one control plane and at least two workers", roles)
	}
	mesh := netip.MustParsePrefix(config.Defaults().MeshCIDRs[0])
	for _, s := range []string{c.Networking.PodSubnet, c.Networking.ServiceSubnet} {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatalf("subnet %q: %v", s, err)
		}
		if p.Overlaps(mesh) {
			t.Errorf("subnet %s overlaps the mesh pool %s", p, mesh)
		}
	}
}

// allowed are the commands run.sh may run: the tools its README names and
// shell builtins.
var allowed = []string{
	"kind", "docker", "kubectl", "helm", "sed",
	"cd", "dirname", "set", "trap", "printf", "echo", "read", "exit", "return", "continue", "[[",
}

// TestRunScript: bash accepts run.sh, and every command it runs is allowed
// or a function it defines.
func TestRunScript(t *testing.T) {
	if out, err := exec.Command("bash", "-n", "run.sh").CombinedOutput(); err != nil {
		t.Fatalf("bash -n run.sh: %v\n%s", err, out)
	}
	b, err := os.ReadFile("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmds, funcs, err := scriptCommands(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("run.sh runs %v; defines %v", cmds, funcs)
	for _, c := range cmds {
		if !slices.Contains(allowed, c) && !slices.Contains(funcs, c) {
			t.Errorf("run.sh runs %q, which is not in the known list %v (or a function of the script)", c, allowed)
		}
	}
	for _, want := range []string{"kind", "docker", "kubectl", "helm", "log"} {
		if !slices.Contains(cmds, want) {
			t.Errorf("run.sh does not run %s; found %v", want, cmds)
		}
	}
	for _, want := range []string{"e2e/kind/kind.yaml", "kind load docker-image", "install/helm/wirelace", "docker build"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("run.sh does not mention %q", want)
		}
	}
}

func TestScriptCommands(t *testing.T) {
	script := strings.Join([]string{
		`#!/bin/bash`,
		`set -e # comment with $(rm -rf /)`,
		`x=$(date +%s)   # a command substitution`,
		`f() { echo "in f: $(whoami) '$(id)'"; }`,
		`for a in one two; do`,
		`  if [[ -n "$a" ]] && grep -q a <<<"$a"; then f; fi`,
		`done`,
		`cat <<'DOC' | tee /dev/null`,
		`not a command`,
		`DOC`,
		`FOO=1 env \`,
		`  | sort`,
		`echo 'quoted; not a command'`,
	}, "\n")
	cmds, funcs, err := scriptCommands(strings.NewReader(script))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"set", "date", "echo", "whoami", "id", "[[", "grep", "f", "cat", "tee", "env", "sort"}
	slices.Sort(want)
	if !slices.Equal(cmds, want) || !slices.Equal(funcs, []string{"f"}) {
		t.Errorf("commands %v functions %v, want %v [f]", cmds, funcs, want)
	}
}

var (
	heredoc  = regexp.MustCompile(`<<-?\s*['"]?([A-Za-z_]+)['"]?`)
	funcDef  = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)\s*\{?`)
	assign   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
	keywords = []string{"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "time", "local"}
)

// scriptCommands lists (sorted, unique) the commands a bash script of
// run.sh's plain shape runs, and the functions it defines. It understands
// comments, line continuations, here-documents, command substitutions (also
// inside double quotes), variable assignments, functions and the usual
// separators; `for` lists and [[ ]] bodies are not commands. It is no bash
// parser: a script that needs more (eval, case, aliases) should fail
// TestRunScript, not slip by.
func scriptCommands(r io.Reader) (cmds, funcs []string, err error) {
	var text strings.Builder
	sc := bufio.NewScanner(r)
	end := ""
	for sc.Scan() {
		line := sc.Text()
		if end != "" {
			if strings.TrimSpace(line) == end {
				end = ""
			}
			continue
		}
		line = stripComment(line)
		if m := heredoc.FindStringSubmatch(line); m != nil && !strings.Contains(line, "<<<") {
			end = m[1]
			line = strings.Replace(line, m[0], "", 1)
		}
		if m := funcDef.FindStringSubmatch(line); m != nil {
			funcs = append(funcs, m[1])
			line = strings.Replace(line, m[0], ";", 1)
		}
		if strings.HasSuffix(line, "\\") {
			text.WriteString(strings.TrimSuffix(line, "\\"))
			continue
		}
		text.WriteString(line + "\n")
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, seg := range segments(text.String()) {
		words := strings.Fields(seg)
		for len(words) > 0 && (slices.Contains(keywords, words[0]) || assign.MatchString(words[0])) {
			words = words[1:]
		}
		if len(words) == 0 || words[0] == "for" || words[0] == "in" {
			continue
		}
		seen[words[0]] = true
	}
	for c := range seen {
		cmds = append(cmds, c)
	}
	slices.Sort(cmds)
	slices.Sort(funcs)
	return cmds, funcs, nil
}

// stripComment drops a # comment that is not inside quotes.
func stripComment(line string) string {
	var q rune
	for i, c := range line {
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '\'' || c == '"':
			q = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i]
		}
	}
	return line
}

// segments splits script text into simple commands: at newlines, ; & |
// and parentheses. A $( ) substitution, in double quotes or not, is a
// command of its own, and the command around it goes on after it.
// Single-quoted text is one word; of [[ ... ]] only the opening word and
// the substitutions inside count.
func segments(s string) []string {
	type level struct {
		cur              strings.Builder
		inDouble, inTest bool
	}
	var out []string
	stack := []*level{{}}
	flush := func() {
		l := stack[len(stack)-1]
		if t := strings.TrimSpace(l.cur.String()); t != "" {
			out = append(out, t)
		}
		l.cur.Reset()
	}
	for i := 0; i < len(s); i++ {
		l, c := stack[len(stack)-1], s[i]
		switch {
		case strings.HasPrefix(s[i:], "$("):
			l.cur.WriteString("$SUBST") // a word in the outer command
			stack = append(stack, &level{})
			i++
		case c == ')' && !l.inDouble && !l.inTest && len(stack) > 1:
			flush()
			stack = stack[:len(stack)-1]
		case l.inTest:
			if strings.HasPrefix(s[i:], "]]") {
				l.inTest = false
				i++
			}
		case strings.HasPrefix(s[i:], "[[") && !l.inDouble:
			flush()
			l.cur.WriteString("[[ ")
			flush()
			l.inTest = true
			i++
		case c == '\'' && !l.inDouble:
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				j = len(s) - i - 1
			}
			l.cur.WriteString("'…'")
			i += j + 1
		case c == '"':
			l.inDouble = !l.inDouble
		case l.inDouble:
			l.cur.WriteByte(c)
		case strings.IndexByte("\n;&|()`", c) >= 0:
			flush()
		default:
			l.cur.WriteByte(c)
		}
	}
	for range stack {
		flush()
		stack = stack[:len(stack)-1]
		if len(stack) == 0 {
			break
		}
	}
	return out
}
