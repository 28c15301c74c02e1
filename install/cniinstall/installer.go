package cniinstall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/wirelace/wirelace/netconf"
)

// Mode is how Wirelace joins the node's CNI configuration.
type Mode string

const (
	// Standalone writes Wirelace's own conflist: Wirelace is the network.
	Standalone Mode = "standalone"
	// Chained appends Wirelace to the primary CNI's plugin chain.
	Chained Mode = "chained"
)

// Defaults, as the DaemonSet mounts the host's directories.
const (
	DefaultConfDir     = "/etc/cni/net.d"
	DefaultBinDir      = "/opt/cni/bin"
	DefaultBinSrcDir   = "/opt/wirelace/bin"
	DefaultConfName    = "10-wirelace.conflist"
	DefaultNetworkName = "wirelace"
	DefaultStatusFile  = "/run/wirelace/install-status.json"
	DefaultPoll        = time.Second
	// StateDirName is the state dir's name inside the conf dir, by default:
	// runtimes load only files, and only with CNI config extensions.
	StateDirName = ".wirelace"
)

// DefaultBinaries are the plugin binaries the image ships.
func DefaultBinaries() []string { return []string{netconf.PluginType, netconf.IPAMType} }

// conflictFix is what an operator must do about a fight; it ends every
// conflict report.
const conflictFix = "the primary CNI rewrites its config file; with Cilium set cni.exclusive=false (Helm value) so other plugins may be chained"

// Config configures an Installer.
type Config struct {
	Mode    Mode
	ConfDir string
	// StateDir keeps the backups and what was installed; "" is
	// ConfDir/.wirelace.
	StateDir string
	// PrimaryConf (chained) names the primary's file in ConfDir; "" picks
	// the one runtimes load.
	PrimaryConf string
	// ConfName and NetworkName (standalone) name Wirelace's conflist and
	// network.
	ConfName    string
	NetworkName string
	// Socket is wirelaced's local API socket, written into the config.
	Socket string
	// Binaries are copied from BinSrcDir into BinDir.
	BinSrcDir string
	BinDir    string
	Binaries  []string
	// StatusFile is written on every change of state; "" writes none.
	StatusFile string
	// PollInterval is how often Run looks at the conf dir.
	PollInterval time.Duration
	// Policy bounds re-inserts; the zero Policy is DefaultPolicy.
	Policy Policy
	Clock  clock.Clock   // nil: the real clock
	Log    *slog.Logger  // nil: discard
	Events EventRecorder // nil: no Events
}

// Installer installs Wirelace into a node's CNI configuration.
type Installer struct {
	cfg    Config
	clock  clock.Clock
	log    *slog.Logger
	store  stateStore
	status statusFile
	// confWrites counts the config files this installer wrote.
	confWrites int
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Installer, error) {
	if cfg.Mode != Standalone && cfg.Mode != Chained {
		return nil, fmt.Errorf("mode %q: want %s or %s", cfg.Mode, Standalone, Chained)
	}
	if cfg.ConfDir == "" {
		return nil, errors.New("no CNI conf dir")
	}
	if cfg.Mode == Standalone && (!strings.HasSuffix(cfg.ConfName, ".conflist") || filepath.Base(cfg.ConfName) != cfg.ConfName) {
		return nil, fmt.Errorf("conf name %q: want a file name ending in .conflist", cfg.ConfName)
	}
	if !filepath.IsAbs(cfg.Socket) {
		return nil, fmt.Errorf("socket %q must be an absolute path", cfg.Socket)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(cfg.ConfDir, StateDirName)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPoll
	}
	if cfg.Policy == (Policy{}) {
		cfg.Policy = DefaultPolicy()
	}
	in := &Installer{cfg: cfg, clock: cfg.Clock, log: cfg.Log, store: stateStore{cfg.StateDir}, status: statusFile{path: cfg.StatusFile}}
	if in.clock == nil {
		in.clock = clock.RealClock{}
	}
	if in.log == nil {
		in.log = slog.New(slog.DiscardHandler)
	}
	return in, nil
}

// ConfDirError is a CNI conf dir that cannot be read: a mount mistake, not
// something waiting fixes.
type ConfDirError struct {
	Dir string
	Err error
}

func (e *ConfDirError) Error() string {
	return fmt.Sprintf("CNI conf dir %s: %v (is the host's CNI conf dir mounted there?)", e.Dir, e.Err)
}

func (e *ConfDirError) Unwrap() error { return e.Err }

// Install copies the binaries and writes Wirelace into the CNI
// configuration once (the init container's job). Any error is returned.
func (in *Installer) Install(ctx context.Context) error {
	if err := in.prepare(); err != nil {
		return err
	}
	st, _, err := in.store.load()
	if err != nil {
		return err
	}
	obs, err := in.inspect(st)
	if err == nil && obs.change != nil {
		err = in.apply(obs.change, st)
	}
	if err != nil {
		in.setStatus(Status{State: StateError, Message: err.Error(), Conflist: obs.conflist})
		return err
	}
	in.installed(obs, 0)
	return nil
}

// Run installs, then watches the conf dir until ctx ends, putting Wirelace
// back when another agent removes it, within the Policy: past it, Run
// reports a conflict (log, status file, Event) and stops writing. Problems
// waiting may fix (no primary config yet, a primary caught mid-write) are
// reported and retried; an unreadable conf dir at start is returned.
func (in *Installer) Run(ctx context.Context) error {
	if err := in.prepare(); err != nil {
		return err
	}
	w := watch{guard: NewGuard(in.cfg.Policy)}
	for {
		wait, err := in.step(ctx, &w)
		if err != nil {
			return err
		}
		if w.guard.Conflict() {
			<-ctx.Done() // stay up, idle, so the status stays readable
			return nil
		}
		t := in.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// watch is Run's memory between passes.
type watch struct {
	guard     *Guard
	installed bool   // written (or found in place) once by this process
	lastErr   string // last error logged, not to repeat it every poll
}

// step makes one pass of Run and says how long to wait before the next.
func (in *Installer) step(ctx context.Context, w *watch) (time.Duration, error) {
	poll := in.cfg.PollInterval
	st, _, err := in.store.load()
	if err != nil {
		return 0, err
	}
	obs, err := in.inspect(st)
	if err != nil {
		var dirErr *ConfDirError
		if errors.As(err, &dirErr) && !w.installed {
			in.setStatus(Status{State: StateError, Message: err.Error()})
			return 0, err
		}
		if msg := err.Error(); msg != w.lastErr {
			in.log.Error("cannot install the CNI config; retrying", "file", obs.conflist, "err", err)
			w.lastErr = msg
		}
		in.setStatus(Status{State: StateError, Message: err.Error(), Conflist: obs.conflist, Reinserts: w.guard.Reinserts()})
		return poll, nil
	}
	w.lastErr = ""
	now := in.clock.Now()
	if obs.change != nil && w.installed {
		d := w.guard.Missing(now)
		switch d.Action {
		case Wait:
			in.log.Debug("wirelace removed from the CNI config; re-inserting after a backoff", "file", obs.conflist, "after", d.After)
			return min(poll, d.After), nil
		case Stop:
			in.reportConflict(ctx, obs.conflist, w.guard)
			return 0, nil
		}
	}
	if obs.change == nil {
		w.guard.Present()
	} else {
		if err := in.apply(obs.change, st); err != nil {
			in.log.Error("cannot write the CNI config; retrying", "file", obs.conflist, "err", err)
			in.setStatus(Status{State: StateError, Message: err.Error(), Conflist: obs.conflist, Reinserts: w.guard.Reinserts()})
			return poll, nil
		}
		if w.installed {
			w.guard.Reinserted(now)
			in.log.Warn("re-inserted wirelace: another agent had rewritten the CNI config", "file", obs.conflist,
				"reinserts_in_window", w.guard.Recent(now), "max", in.cfg.Policy.MaxReinserts, "window", in.cfg.Policy.Window)
		}
	}
	w.installed = true
	in.installed(obs, w.guard.Reinserts())
	return poll, nil
}

// reportConflict tells the operator, every way it can, that another agent
// keeps removing Wirelace and how to stop it.
func (in *Installer) reportConflict(ctx context.Context, conflist string, g *Guard) {
	p := in.cfg.Policy
	msg := fmt.Sprintf("wirelace was removed from %s again after %d re-inserts within %v; stopped writing it so as not to fight: %s, then restart wirelace-install",
		conflist, g.Recent(in.clock.Now()), p.Window, conflictFix)
	in.log.Error("CNI config conflict: stopped re-inserting wirelace", "file", conflist, "reinserts", g.Reinserts(), "fix", msg)
	in.setStatus(Status{State: StateConflict, Message: msg, Conflist: conflist, Reinserts: g.Reinserts()})
	if in.cfg.Events == nil {
		in.log.Info("no Kubernetes client or node name: not recording an Event", "file", conflist)
		return
	}
	if err := in.cfg.Events.Warning(ctx, ReasonConflict, msg); err != nil {
		in.log.Error("cannot record the conflict Event", "err", err)
	}
}

// prepare checks the conf dir and installs the binaries, the first steps
// of Install and Run; a failure is reported in the status file.
func (in *Installer) prepare() error {
	err := in.checkConfDir()
	if err == nil {
		err = in.installBinaries()
	}
	if err != nil {
		in.setStatus(Status{State: StateError, Message: err.Error()})
	}
	return err
}

// checkConfDir fails unless the conf dir is a directory: the installer
// must not create it (and so hide a missing mount).
func (in *Installer) checkConfDir() error {
	st, err := os.Stat(in.cfg.ConfDir)
	if err == nil && !st.IsDir() {
		err = errors.New("not a directory")
	}
	if err != nil {
		return &ConfDirError{Dir: in.cfg.ConfDir, Err: err}
	}
	return nil
}

// installBinaries copies the plugin binaries and records them for
// --uninstall --remove-binaries.
func (in *Installer) installBinaries() error {
	if len(in.cfg.Binaries) == 0 {
		return nil
	}
	if _, err := copyBinaries(in.log, in.cfg.BinSrcDir, in.cfg.BinDir, in.cfg.Binaries); err != nil {
		return err
	}
	st, found, err := in.store.load()
	if err != nil {
		return err
	}
	all := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(st.Binaries), in.cfg.Binaries...))))
	if found && slices.Equal(all, st.Binaries) {
		return nil
	}
	if !found {
		st.Mode = in.cfg.Mode
	}
	st.Binaries = all
	return in.store.save(st)
}

// observed is what one look at the conf dir found.
type observed struct {
	conflist string  // the config file Wirelace is, or is to be, in
	message  string  // for the status file when installed
	warning  string  // logged when the status changes to this
	change   *change // what to write; nil when Wirelace is in place
}

// change is one write into the conf dir.
type change struct {
	source  string // the file read, whose bytes are backed up; "" for none
	orig    []byte
	target  string // the file written
	data    []byte
	perm    fs.FileMode
	convert bool // move source aside once target is written
}

// listConfDir returns the regular files in the conf dir, and every entry
// (directories with a trailing /) for error messages.
func (in *Installer) listConfDir() (files, all []string, err error) {
	entries, err := os.ReadDir(in.cfg.ConfDir)
	if err != nil {
		return nil, nil, &ConfDirError{Dir: in.cfg.ConfDir, Err: err}
	}
	for _, e := range entries {
		switch {
		case e.IsDir():
			all = append(all, e.Name()+"/")
		case e.Type().IsRegular():
			files = append(files, e.Name())
			all = append(all, e.Name())
		default: // a symlink: runtimes follow it
			if st, err := os.Stat(filepath.Join(in.cfg.ConfDir, e.Name())); err == nil && st.Mode().IsRegular() {
				files = append(files, e.Name())
			}
			all = append(all, e.Name())
		}
	}
	return files, all, nil
}

// inspect looks at the conf dir and says what, if anything, to write.
func (in *Installer) inspect(st installState) (observed, error) {
	if in.cfg.Mode == Standalone {
		return in.inspectStandalone(st)
	}
	return in.inspectChained(st)
}

func (in *Installer) inspectStandalone(st installState) (observed, error) {
	files, _, err := in.listConfDir()
	path := filepath.Join(in.cfg.ConfDir, in.cfg.ConfName)
	obs := observed{conflist: path, message: "wrote " + path}
	if err != nil {
		return obs, err
	}
	// A runtime loads the first file; Wirelace is the network only if that
	// is its conflist.
	if first, err := pickPrimary(in.cfg.ConfDir, files, nil, "", nil); err == nil && first < in.cfg.ConfName {
		obs.warning = fmt.Sprintf("wrote %s, but runtimes load %s, which sorts first: use --mode=chained, or a --conf-name that sorts first", path, first)
		obs.message = obs.warning
	}
	want := StandaloneConflist(in.cfg.NetworkName, in.cfg.Socket)
	cur, exists, err := readFile(path)
	if err != nil {
		return obs, err
	}
	if exists && bytes.Equal(cur, want) {
		return obs, nil
	}
	obs.change = &change{target: in.cfg.ConfName, data: want, perm: 0o644}
	if exists && st.Source == "" {
		if has, err := HasPlugin(cur, netconf.PluginType); err != nil || !has {
			// Someone else's file stood there: keep it for --uninstall.
			obs.change.source, obs.change.orig = in.cfg.ConfName, cur
			obs.change.perm = permOf(path, 0o644)
		}
	}
	return obs, nil
}

func (in *Installer) inspectChained(st installState) (observed, error) {
	files, all, err := in.listConfDir()
	if err != nil {
		return observed{}, err
	}
	converted := map[string]string{}
	if st.Converted {
		converted[st.Source] = st.Target
	}
	if st.Mode == Standalone {
		// Our own conflist from a standalone install is no primary: apply
		// removes it.
		files = slices.DeleteFunc(files, func(f string) bool { return f == st.Target })
	}
	name, err := pickPrimary(in.cfg.ConfDir, files, all, in.cfg.PrimaryConf, converted)
	if err != nil {
		return observed{}, err
	}
	path := filepath.Join(in.cfg.ConfDir, name)
	obs := observed{conflist: path, message: "wirelace is the last plugin of " + path}
	data, err := os.ReadFile(path)
	if err != nil {
		return obs, err
	}
	p, err := parse(data)
	if err != nil {
		return obs, fmt.Errorf("primary CNI config %s: %w", path, err)
	}
	if p.has(data, netconf.PluginType) {
		return obs, nil
	}
	entry := Entry(in.cfg.Socket)
	perm := permOf(path, 0o644)
	if p.isList {
		out, err := Insert(data, entry)
		if err != nil {
			return obs, fmt.Errorf("primary CNI config %s: %w", path, err)
		}
		obs.change = &change{source: name, orig: data, target: name, data: out, perm: perm}
		return obs, nil
	}
	target := conflistName(name)
	if target == name {
		return obs, fmt.Errorf("primary CNI config %s is named .conflist but has no \"plugins\" list", path)
	}
	if slices.Contains(files, target) && (!st.Converted || st.Target != target) {
		return obs, fmt.Errorf("cannot convert the single-plugin %s to %s: that file exists and was not written by wirelace-install", path, target)
	}
	out, err := Convert(data, entry)
	if err != nil {
		return obs, fmt.Errorf("primary CNI config %s: %w", path, err)
	}
	obs.conflist = filepath.Join(in.cfg.ConfDir, target)
	obs.message = fmt.Sprintf("wirelace is the last plugin of %s, converted from %s (moved aside to %s%s)", obs.conflist, path, name, movedAsideSuffix)
	obs.change = &change{source: name, orig: data, target: target, data: out, perm: perm, convert: true}
	return obs, nil
}

// apply makes a change: the backup and the state first, so that a crash at
// any point leaves what --uninstall needs; then the config, atomically.
func (in *Installer) apply(c *change, st installState) error {
	if st.Target != "" && st.Target != c.target {
		// The primary changed files (or the mode changed): undo the old
		// install first, so exactly one file carries Wirelace.
		if err := in.restore(st); err != nil {
			in.log.Warn("cannot undo the previous install", "file", filepath.Join(in.cfg.ConfDir, st.Target), "err", err)
		}
		if err := in.store.removeBackup(st.Source); err != nil {
			return err
		}
		st = installState{Binaries: st.Binaries}
	}
	if c.source != "" {
		if st.Source != "" && st.Source != c.source {
			if err := in.store.removeBackup(st.Source); err != nil {
				return err
			}
		}
		// The primary's bytes as they are now are "the original" from now on.
		if err := in.store.saveBackup(c.source, c.orig, c.perm); err != nil {
			return fmt.Errorf("back up %s: %w", c.source, err)
		}
		st.Source = c.source
	}
	st.Mode, st.Target, st.Converted = in.cfg.Mode, c.target, c.convert
	if err := in.store.save(st); err != nil {
		return fmt.Errorf("save install state in %s: %w", in.cfg.StateDir, err)
	}
	target := filepath.Join(in.cfg.ConfDir, c.target)
	if err := writeFileAtomic(target, c.data, c.perm); err != nil {
		return fmt.Errorf("write %s: %w", target, err)
	}
	in.confWrites++
	in.log.Info("wrote CNI config", "file", target, "mode", in.cfg.Mode)
	if c.convert {
		src := filepath.Join(in.cfg.ConfDir, c.source)
		if err := renameDurable(src, src+movedAsideSuffix); err != nil {
			return fmt.Errorf("move %s aside: %w", src, err)
		}
		in.log.Info("moved the single-plugin conf aside", "file", src, "to", src+movedAsideSuffix)
	}
	return nil
}

// Uninstall takes Wirelace out of the CNI configuration, restoring the
// files it changed byte for byte, except one the primary rewrote since
// (which is left as the primary wrote it); then removes the state dir, and
// the binaries if withBinaries.
func (in *Installer) Uninstall(ctx context.Context, withBinaries bool) error {
	st, found, err := in.store.load()
	if err != nil {
		return err
	}
	if !found {
		st, err = in.guessState()
		if err != nil {
			in.setStatus(Status{State: StateError, Message: err.Error()})
			return err
		}
	}
	if err := in.checkConfDir(); err != nil {
		return err
	}
	if err := in.restore(st); err != nil {
		in.setStatus(Status{State: StateError, Message: err.Error()})
		return err
	}
	if err := in.store.remove(); err != nil {
		return fmt.Errorf("remove the state dir %s: %w", in.cfg.StateDir, err)
	}
	if withBinaries {
		names := st.Binaries
		if len(names) == 0 {
			names = in.cfg.Binaries
		}
		if err := removeBinaries(in.log, in.cfg.BinDir, names); err != nil {
			return err
		}
	}
	in.setStatus(Status{State: StateUninstalled, Message: "wirelace removed from the CNI configuration"})
	return nil
}

// guessState stands in for a lost state dir: the file Wirelace would be in,
// with no backup, so restore removes the entry from it.
func (in *Installer) guessState() (installState, error) {
	st := installState{Mode: in.cfg.Mode}
	if in.cfg.Mode == Standalone {
		st.Target = in.cfg.ConfName
		return st, nil
	}
	files, all, err := in.listConfDir()
	if err != nil {
		return st, err
	}
	name, err := pickPrimary(in.cfg.ConfDir, files, all, in.cfg.PrimaryConf, nil)
	var none *NoPrimaryError
	if errors.As(err, &none) {
		return st, nil // nothing to undo
	}
	st.Target = name
	in.log.Warn("no install state: removing any wirelace entry from the primary CNI config", "file", filepath.Join(in.cfg.ConfDir, name), "state_dir", in.cfg.StateDir)
	return st, err
}

// restore undoes the install st records.
func (in *Installer) restore(st installState) error {
	if st.Target == "" {
		return nil
	}
	target := filepath.Join(in.cfg.ConfDir, st.Target)
	if st.Converted {
		return in.restoreConverted(st, target)
	}
	cur, exists, err := readFile(target)
	if err != nil || !exists {
		return err
	}
	has, err := HasPlugin(cur, netconf.PluginType)
	if err != nil || !has {
		in.log.Info("no wirelace entry left: another agent rewrote the file since; leaving it as it is", "file", target)
		return nil
	}
	orig, perm, haveOrig, err := in.store.backup(st.Source)
	if err != nil {
		return err
	}
	haveOrig = haveOrig && st.Source == st.Target
	var out []byte
	switch {
	case st.Mode == Standalone && haveOrig:
		out = orig
	case st.Mode == Standalone:
		if err := removeDurable(target); err != nil {
			return err
		}
		in.log.Info("removed CNI config", "file", target)
		return nil
	case haveOrig && insertsTo(orig, cur):
		out = orig // exactly as it was
	default:
		perm = permOf(target, 0o644)
		// Changed since the insert by someone who kept Wirelace: take out
		// only Wirelace's entry.
		if out, err = Remove(cur, netconf.PluginType); err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
	}
	if err := writeFileAtomic(target, out, perm); err != nil {
		return err
	}
	in.log.Info("restored CNI config", "file", target)
	return nil
}

// insertsTo reports whether cur is orig with Wirelace's entry inserted
// (whatever socket it names), and nothing else changed.
func insertsTo(orig, cur []byte) bool {
	out, err := Remove(cur, netconf.PluginType)
	return err == nil && bytes.Equal(out, orig)
}

// restoreConverted puts a converted conf back: the conf first, so the
// runtime always has a config, then the conflist made from it goes.
func (in *Installer) restoreConverted(st installState, target string) error {
	src := filepath.Join(in.cfg.ConfDir, st.Source)
	aside := src + movedAsideSuffix
	_, srcExists, err := readFile(src)
	if err != nil {
		return err
	}
	if srcExists {
		in.log.Info("the primary rewrote its conf since; leaving it as it is", "file", src)
	} else {
		orig, perm, ok, err := in.store.backup(st.Source)
		if err == nil && !ok {
			orig, ok, err = readFile(aside)
			perm = permOf(aside, 0o644)
		}
		if err != nil {
			return err
		}
		if ok {
			if err := writeFileAtomic(src, orig, perm); err != nil {
				return err
			}
			in.log.Info("restored CNI config", "file", src)
		}
	}
	if err := removeDurable(aside); err != nil {
		return err
	}
	cur, exists, err := readFile(target)
	if err != nil || !exists {
		return err
	}
	if has, err := HasPlugin(cur, netconf.PluginType); err != nil || !has {
		in.log.Info("no wirelace entry in the converted conflist; leaving it as it is", "file", target)
		return nil
	}
	if err := removeDurable(target); err != nil {
		return err
	}
	in.log.Info("removed the conflist converted from the conf", "file", target)
	return nil
}

// setStatus writes the status file; a failure is logged, not fatal: the
// CNI configuration matters more than the report about it.
func (in *Installer) setStatus(s Status) {
	if err := in.status.set(s, in.clock.Now()); err != nil {
		in.log.Warn("cannot write the status file", "file", in.cfg.StatusFile, "err", err)
	}
}

// installed reports a successful pass, logging a warning the first time.
func (in *Installer) installed(obs observed, reinserts int) {
	s := Status{State: StateInstalled, Message: obs.message, Conflist: obs.conflist, Reinserts: reinserts}
	if obs.warning != "" && s != in.status.last {
		in.log.Warn(obs.warning, "file", obs.conflist)
	}
	in.setStatus(s)
}
