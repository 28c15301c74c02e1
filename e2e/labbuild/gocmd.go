package labbuild

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

// heartbeatEvery is how often a long go command reports that it is still
// running. Linking kube-apiserver prints nothing for tens of seconds and a
// cold build takes minutes; a silent test looks hung.
const heartbeatEvery = 20 * time.Second

// progressWriter serialises writes from the go command's output copier and
// the heartbeat goroutine, and prefixes every line so build output is easy to
// tell apart from test output.
type progressWriter struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	partial []byte
}

func newProgressWriter(w io.Writer, prefix string) *progressWriter {
	if w == nil {
		w = io.Discard
	}
	return &progressWriter{w: w, prefix: prefix}
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		// Progress is best effort: a failing sink must not fail the build.
		_, _ = fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.partial[:i])
		p.partial = p.partial[i+1:]
	}
	return len(b), nil
}

// Printf writes one complete progress line.
func (p *progressWriter) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = fmt.Fprintf(p.w, p.prefix+format+"\n", args...)
}

// flush emits a trailing line that had no newline.
func (p *progressWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.partial) > 0 {
		_, _ = fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.partial)
		p.partial = nil
	}
}

// goEnv is the environment for go commands run on a wrapper module. It keeps
// the caller's environment (GOPROXY, GOCACHE, GOTOOLCHAIN, GOFLAGS, ...) but:
//   - replaces any -mod flag in GOFLAGS with -mod=mod: the wrapper module's
//     go.mod/go.sum are generated and must be allowed to be completed;
//   - sets GOWORK=off: the cache may live inside a repository that has a
//     go.work, which would otherwise refuse a module it does not list;
//   - sets CGO_ENABLED=0: upstream ships these binaries static, and a static
//     binary does not care which libc the lab machine has;
//   - sets GOOS/GOARCH to this process's platform: the binaries must run here
//     even if the environment is set up for cross-compiling.
func goEnv() []string {
	var flags []string
	for _, f := range strings.Fields(os.Getenv("GOFLAGS")) {
		if f == "-mod" || strings.HasPrefix(f, "-mod=") || strings.HasPrefix(f, "--mod=") {
			continue
		}
		flags = append(flags, f)
	}
	flags = append(flags, "-mod=mod")

	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOFLAGS", "GOWORK", "CGO_ENABLED", "GOOS", "GOARCH":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOFLAGS="+strings.Join(flags, " "), "GOWORK=off", "CGO_ENABLED=0",
		"GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
}

// runGo runs `go args...` in dir, streaming its output to progress with a
// heartbeat line while it runs. If stdout is not nil, the command's standard
// output goes there instead (for -json output). On failure the error carries
// the last lines of output, so a failed build is diagnosable from the error
// alone.
func runGo(ctx context.Context, dir string, progress *progressWriter, stdout io.Writer, args ...string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("find go toolchain in PATH: %w", err)
	}
	tail := &tailBuffer{max: 40}
	out := io.MultiWriter(progress, tail)

	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = goEnv()
	cmd.Stdout = out
	cmd.Stderr = out
	if stdout != nil {
		cmd.Stdout = stdout
	}
	// Give the go command a chance to clean up its temporary files when the
	// context is cancelled, then kill it.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second

	verb := strings.Join(args[:min(2, len(args))], " ") // "build -v", "mod download"
	start := time.Now()
	progress.Printf("$ go %s   (in %s)", strings.Join(args, " "), dir)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				progress.Printf("... still running go %s (%s elapsed)", verb, time.Since(start).Round(time.Second))
			}
		}
	}()
	err = cmd.Run()
	close(stop)
	wg.Wait()
	progress.flush()
	if err != nil {
		return fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), dir, err, tail.String())
	}
	progress.Printf("done: go %s (%s)", verb, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// tailBuffer keeps the last max lines written to it.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
	cur   []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur = append(t.cur, b...)
	for {
		i := bytes.IndexByte(t.cur, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(t.cur[:i]))
		t.cur = t.cur[i+1:]
		if len(t.lines) > t.max {
			t.lines = t.lines[len(t.lines)-t.max:]
		}
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.Join(t.lines, "\n")
	if len(t.cur) > 0 {
		s += "\n" + string(t.cur)
	}
	return s
}
