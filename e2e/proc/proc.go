// Package proc runs the lab's long-lived processes (etcd, kube-apiserver,
// wirelaced): each with its log file, its own process group, and death tied
// to the lab process, so nothing outlives a crashed test.
package proc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Process is one started process with its output appended to a log file.
type Process struct {
	Name    string
	LogPath string
	Pid     int

	done    chan struct{} // closed when the process has been reaped
	waitErr error         // valid after done is closed
	state   *os.ProcessState
}

// Start starts argv with stdout and stderr appended to logPath.
//
// The process gets its own process group (so Stop signals everything it may
// spawn) and Pdeathsig=SIGKILL, so a test binary that crashes or is killed
// never leaves a daemon behind.
func Start(name, logPath string, argv []string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	fmt.Fprintf(logFile, "# %s: exec %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	p := &Process{Name: name, LogPath: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	// Pdeathsig fires when the *thread* that forked the child exits, not the
	// process. The Go runtime retires threads whose goroutine exits while
	// locked, which netns code (ours or a library's) does on purpose after a
	// failed setns. Forking from a goroutine that keeps its thread locked
	// until the child is reaped ties the signal to the child's real lifetime.
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.Pid = cmd.Process.Pid
		started <- nil
		p.waitErr = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	err = <-started
	// The child has its own copy of the descriptor; ours is no longer needed.
	_ = logFile.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// Exited reports whether the process has terminated.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed once the process has been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended (nil while it runs).
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.waitErr
}

// ExitCode is the exit code once the process ended, else -1.
func (p *Process) ExitCode() int {
	if !p.Exited() || p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// Kill sends SIGKILL to the process alone (not its group), as a crash or the
// OOM killer would, and waits until it is reaped.
func (p *Process) Kill() error {
	if err := syscall.Kill(p.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGKILL %s (pid %d): %w", p.Name, p.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit 10s after SIGKILL", p.Name, p.Pid)
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL if it has not exited
// after grace, and waits until the process is reaped. A process that already
// exited is not an error here.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	// Negative pid: the whole process group (Setpgid made it pid).
	if err := syscall.Kill(-p.Pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGTERM %s (pid %d): %w", p.Name, p.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGKILL %s (pid %d): %w", p.Name, p.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit 10s after SIGKILL", p.Name, p.Pid)
	}
}

// LogTail returns the last n lines of the log, for error messages that must
// explain a failure without the reader digging for files.
func (p *Process) LogTail(n int) string { return LogTail(p.LogPath, n) }

// LogTail returns the last n lines of a file.
func LogTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
