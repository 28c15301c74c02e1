package cniinstall

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testConfig is a Config over temporary dirs, without binaries.
func testConfig(t *testing.T, mode Mode, confDir string) Config {
	return Config{
		Mode:         mode,
		ConfDir:      confDir,
		ConfName:     DefaultConfName,
		NetworkName:  DefaultNetworkName,
		Socket:       testSocket,
		StatusFile:   filepath.Join(t.TempDir(), "install-status.json"),
		PollInterval: 20 * time.Millisecond,
		Log:          testLogger(t),
	}
}

func newInstaller(t *testing.T, cfg Config) *Installer {
	t.Helper()
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func readStatus(t *testing.T, in *Installer) Status {
	t.Helper()
	s, err := ReadStatus(in.cfg.StatusFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.RFC3339, s.Updated); err != nil {
		t.Errorf("status updated %q: %v", s.Updated, err)
	}
	return s
}

// uninstallRestores uninstalls with a new Installer and checks that the
// conf dir is back to before, byte for byte and mode for mode.
func uninstallRestores(t *testing.T, cfg Config, before tree, withBinaries ...bool) {
	t.Helper()
	in := newInstaller(t, cfg)
	if err := in.Uninstall(context.Background(), len(withBinaries) > 0 && withBinaries[0]); err != nil {
		t.Fatal(err)
	}
	if d := before.diff(snapshot(t, cfg.ConfDir)); d != "" {
		t.Errorf("uninstall did not restore the conf dir:\n%s", d)
	}
	if s := readStatus(t, in); s.State != StateUninstalled {
		t.Errorf("status after uninstall %+v", s)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestChainedInstallUninstall installs into a primary 1 to 3 times, each
// time by a new Installer as after a restart, then uninstalls: the conf
// dir must be byte for byte as before, modes included.
func TestChainedInstallUninstall(t *testing.T) {
	bridge := readFileT(t, "testdata/10-bridge.conf")
	for _, tc := range []struct {
		name     string
		primary  string
		data     []byte
		conflist string // where wirelace ends up
		want     []byte
	}{
		{"cilium conflist", "05-cilium.conflist", []byte(ciliumConflist), "05-cilium.conflist",
			[]byte("\n{\n  \"cniVersion\": \"0.3.1\",\n  \"name\": \"cilium\",\n  \"plugins\": [\n    {\n       \"type\": \"cilium-cni\",\n       \"enable-debug\": false,\n       \"log-file\": \"/var/run/cilium/cilium-cni.log\"\n    },\n    " + entry + "\n  ]\n}")},
		{"bridge conf", "10-bridge.conf", bridge, "10-bridge.conflist",
			[]byte(`{"cniVersion":"0.4.0","name":"mynet","plugins":[` + string(bytes.TrimSpace(bridge)) + `,` + entry + "]}\n")},
	} {
		for installs := 1; installs <= 3; installs++ {
			t.Run(tc.name+"/"+strings.Repeat("install,", installs)+"uninstall", func(t *testing.T) {
				dir := t.TempDir()
				writeFile(t, filepath.Join(dir, tc.primary), tc.data, 0o640)
				writeFile(t, filepath.Join(dir, "99-loopback.conf"), []byte(`{"cniVersion":"0.3.1","name":"lo","type":"loopback"}`), 0o644)
				before := snapshot(t, dir)
				cfg := testConfig(t, Chained, dir)

				var ino uint64
				for i := range installs {
					in := newInstaller(t, cfg)
					if err := in.Install(context.Background()); err != nil {
						t.Fatalf("install %d: %v", i+1, err)
					}
					conflist := filepath.Join(dir, tc.conflist)
					if got := readFileT(t, conflist); !bytes.Equal(got, tc.want) {
						t.Fatalf("install %d wrote\n%q\nwant\n%q", i+1, got, tc.want)
					}
					if want := map[bool]int{true: 1, false: 0}[i == 0]; in.confWrites != want {
						t.Errorf("install %d wrote %d files, want %d", i+1, in.confWrites, want)
					}
					if i == 0 {
						ino = inode(t, conflist)
					} else if inode(t, conflist) != ino {
						t.Errorf("install %d replaced a file already in place", i+1)
					}
					if st, _ := os.Stat(conflist); st.Mode().Perm() != 0o640 {
						t.Errorf("conflist mode %v, want the primary's 0640", st.Mode())
					}
					s := readStatus(t, in)
					if s.State != StateInstalled || s.Conflist != conflist {
						t.Errorf("status %+v", s)
					}
				}
				if tc.primary != tc.conflist {
					if _, err := os.Stat(filepath.Join(dir, tc.primary)); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("the converted conf is still where runtimes load it: %v", err)
					}
					aside := readFileT(t, filepath.Join(dir, tc.primary+movedAsideSuffix))
					if !bytes.Equal(aside, tc.data) {
						t.Error("the moved-aside conf changed")
					}
				}
				if b := readFileT(t, filepath.Join(dir, StateDirName, tc.primary+backupSuffix)); !bytes.Equal(b, tc.data) {
					t.Errorf("backup %q, want the original", b)
				}

				uninstallRestores(t, cfg, before)
			})
		}
	}
}

func TestStandaloneInstallUninstall(t *testing.T) {
	dir, bin, src := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "wirelace"), []byte("plugin"), 0o755)
	writeFile(t, filepath.Join(src, "wirelace-ipam"), []byte("ipam"), 0o755)
	before := snapshot(t, dir)
	cfg := testConfig(t, Standalone, dir)
	cfg.BinSrcDir, cfg.BinDir, cfg.Binaries = src, bin, DefaultBinaries()
	for i := range 2 {
		in := newInstaller(t, cfg)
		if err := in.Install(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := readFileT(t, filepath.Join(dir, DefaultConfName))
		if !bytes.Equal(got, StandaloneConflist("wirelace", testSocket)) {
			t.Fatalf("wrote %s", got)
		}
		if want := 1 - i; in.confWrites != want {
			t.Errorf("install %d wrote %d files, want %d", i+1, in.confWrites, want)
		}
		if s := readStatus(t, in); s.State != StateInstalled || s.Message != "wrote "+filepath.Join(dir, DefaultConfName) {
			t.Errorf("status %+v", s)
		}
	}
	if got := readFileT(t, filepath.Join(bin, "wirelace-ipam")); string(got) != "ipam" {
		t.Errorf("binary: %q", got)
	}

	uninstallRestores(t, cfg, before, true)
	if left, _ := os.ReadDir(bin); len(left) != 0 {
		t.Errorf("--remove-binaries left %v", left)
	}
}

// TestStandaloneReplacesForeignFile: a file that stood at --conf-name is
// kept and comes back on uninstall, even after Wirelace's was rewritten.
func TestStandaloneReplacesForeignFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DefaultConfName)
	writeFile(t, path, []byte(`{"cniVersion":"0.3.1","name":"old","plugins":[{"type":"ptp"}]}`), 0o600)
	before := snapshot(t, dir)
	cfg := testConfig(t, Standalone, dir)
	in := newInstaller(t, cfg)
	stop := runInstaller(t, in)
	waitFor(t, 5*time.Second, "the install", func() bool { return hasWirelace(path) })
	os.Remove(path) // an agent removes it; the installer writes it again
	waitFor(t, 5*time.Second, "the re-insert", func() bool { return hasWirelace(path) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	uninstallRestores(t, cfg, before)
}

func TestStandaloneWarnsWhenShadowed(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "05-cilium.conflist"), []byte(ciliumConflist), 0o644)
	in := newInstaller(t, testConfig(t, Standalone, dir))
	if err := in.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := readStatus(t, in); s.State != StateInstalled || !strings.Contains(s.Message, "runtimes load 05-cilium.conflist, which sorts first") {
		t.Errorf("status %+v", s)
	}
}

// TestUninstallAfterPrimaryRewrote: a primary that rewrote its file since
// keeps it as it wrote it; one that kept Wirelace and added its own entry
// loses only Wirelace's.
func TestUninstallAfterPrimaryRewrote(t *testing.T) {
	istio := `,{"type":"istio-cni","log_level":"info"}`
	withWirelace := strings.Replace(ciliumConflist, "\n    }\n  ]", "\n    },\n    "+entry+"\n  ]", 1)
	for _, tc := range []struct {
		name, rewrite, want string
		untouched           bool
	}{
		{"rewritten without wirelace", strings.Replace(ciliumConflist, "false", "true", 1), strings.Replace(ciliumConflist, "false", "true", 1), true},
		{"another plugin appended after wirelace", strings.Replace(withWirelace, entry, entry+istio, 1),
			strings.Replace(ciliumConflist, "\n    }\n  ]", "\n    }"+istio+"\n  ]", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "05-cilium.conflist")
			writeFile(t, path, []byte(ciliumConflist), 0o644)
			cfg := testConfig(t, Chained, dir)
			if err := newInstaller(t, cfg).Install(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := string(readFileT(t, path)); got != withWirelace {
				t.Fatalf("installed %q", got)
			}
			writeFile(t, path, []byte(tc.rewrite), 0o644)
			ino := inode(t, path)
			if err := newInstaller(t, cfg).Uninstall(context.Background(), false); err != nil {
				t.Fatal(err)
			}
			if got := string(readFileT(t, path)); got != tc.want {
				t.Errorf("after uninstall\n%q\nwant\n%q", got, tc.want)
			}
			if tc.untouched && inode(t, path) != ino {
				t.Error("uninstall rewrote a file that had no wirelace entry")
			}
			if _, err := os.Stat(filepath.Join(dir, StateDirName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state dir left: %v", err)
			}
		})
	}
}

// TestPrimaryMoves: a new config that sorts first becomes the primary;
// Wirelace moves to it and the old one is restored.
func TestPrimaryMoves(t *testing.T) {
	dir := t.TempDir()
	flannel := []byte(`{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}` + "\n")
	writeFile(t, filepath.Join(dir, "10-flannel.conflist"), flannel, 0o644)
	cfg := testConfig(t, Chained, dir)
	if err := newInstaller(t, cfg).Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "05-cilium.conflist"), []byte(ciliumConflist), 0o644)
	if err := newInstaller(t, cfg).Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFileT(t, filepath.Join(dir, "10-flannel.conflist")); !bytes.Equal(got, flannel) {
		t.Errorf("old primary not restored: %s", got)
	}
	if has, _ := HasPlugin(readFileT(t, filepath.Join(dir, "05-cilium.conflist")), "wirelace"); !has {
		t.Error("wirelace not in the new primary")
	}
	if _, err := os.Stat(filepath.Join(dir, StateDirName, "10-flannel.conflist"+backupSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old primary's backup is left: %v", err)
	}
}

func TestInstallErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		mode  Mode
		want  []string
	}{
		{"conf dir missing", nil, Chained, []string{"CNI conf dir", "missing", "no such file or directory", "mounted"}},
		{"no primary", map[string]string{"05-cilium.conflist.cilium_bak": ciliumConflist, "README": "x"}, Chained,
			[]string{"no primary CNI config in", "it holds 05-cilium.conflist.cilium_bak, README"}},
		{"malformed primary", map[string]string{"05-bad.conflist": "{\n  \"name\": \"n\",\n  \"plugins\": [{\"type\": \"a\"},]\n}\n"}, Chained,
			[]string{"05-bad.conflist", "byte offset 46 (line 3, column 29)", "invalid character ']'"}},
		{"conf dir is a file", nil, Standalone, []string{"not a directory"}},
		{"conversion target exists", map[string]string{"05-foo.conf": `{"name":"n","type":"bridge"}`, "05-foo.conflist": ciliumConflist}, Chained,
			[]string{"cannot convert", "05-foo.conflist: that file exists and was not written by wirelace-install"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "missing")
			if tc.files != nil {
				dir = root
				for name, data := range tc.files {
					writeFile(t, filepath.Join(dir, name), []byte(data), 0o644)
				}
			}
			if tc.name == "conf dir is a file" {
				dir = filepath.Join(root, "file")
				writeFile(t, dir, nil, 0o644)
			}
			before := snapshot(t, root)
			in := newInstaller(t, testConfig(t, tc.mode, dir))
			err := in.Install(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if d := before.diff(snapshot(t, root)); d != "" {
				t.Errorf("a failed install changed files:\n%s", d)
			}
			if s := readStatus(t, in); s.State != StateError || s.Message != err.Error() {
				t.Errorf("status %+v", s)
			}
			// Run fails at once on a conf dir it cannot read, and waits on
			// the rest, which waiting may fix.
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			var dirErr *ConfDirError
			if err := newInstaller(t, testConfig(t, tc.mode, dir)).Run(ctx); errors.As(err, &dirErr) != (tc.files == nil) || (err != nil && tc.files != nil) {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, mut := range []func(*Config){
		func(c *Config) { c.Mode = "exclusive" },
		func(c *Config) { c.ConfDir = "" },
		func(c *Config) { c.Socket = "wirelaced.sock" },
		func(c *Config) { c.ConfName = "../10-wirelace.conflist" },
		func(c *Config) { c.ConfName = "10-wirelace" },
	} {
		cfg := testConfig(t, Standalone, t.TempDir())
		mut(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
}

// runInstaller runs in.Run until the returned stop is called, which
// returns Run's error.
func runInstaller(t *testing.T, in *Installer) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- in.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasWirelace(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	has, _ := HasPlugin(b, "wirelace")
	return has
}

// TestRunReinserts: Cilium restarts and regenerates its conflist without
// Wirelace; Wirelace is put back, and the regenerated file is the new
// original.
func TestRunReinserts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "05-cilium.conflist")
	writeFile(t, path, []byte(ciliumConflist), 0o644)
	in := newInstaller(t, testConfig(t, Chained, dir))
	stop := runInstaller(t, in)
	waitFor(t, 5*time.Second, "the install", func() bool { return hasWirelace(path) })

	regenerated := []byte(strings.Replace(ciliumConflist, "false", "true", 1))
	if err := writeFileAtomic(path, regenerated, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the re-insert", func() bool { return hasWirelace(path) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if in.confWrites != 2 {
		t.Errorf("%d writes, want the install and one re-insert", in.confWrites)
	}
	if b := readFileT(t, filepath.Join(dir, StateDirName, "05-cilium.conflist"+backupSuffix)); !bytes.Equal(b, regenerated) {
		t.Errorf("backup is %q, want the regenerated file", b)
	}
	if s := readStatus(t, in); s.State != StateInstalled || s.Reinserts != 1 {
		t.Errorf("status %+v", s)
	}
	if err := newInstaller(t, testConfig(t, Chained, dir)).Uninstall(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if got := readFileT(t, path); !bytes.Equal(got, regenerated) {
		t.Errorf("uninstall left %q, want the regenerated file", got)
	}
}

// TestRunReconvertsConf: the primary writes its single-plugin conf again
// (it sorts before the conflist made from it); Wirelace converts the new
// one, which is the new original. --primary-conf names the conf throughout.
func TestRunReconvertsConf(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "10-bridge.conf")
	conflist := filepath.Join(dir, "10-bridge.conflist")
	writeFile(t, conf, readFileT(t, "testdata/10-bridge.conf"), 0o644)
	cfg := testConfig(t, Chained, dir)
	cfg.PrimaryConf = "10-bridge.conf"
	in := newInstaller(t, cfg)
	stop := runInstaller(t, in)
	waitFor(t, 5*time.Second, "the conversion", func() bool { return hasWirelace(conflist) })

	rewritten := []byte(`{"cniVersion":"0.4.0","name":"mynet","type":"bridge","bridge":"cni1"}`)
	writeFile(t, conf, rewritten, 0o644)
	waitFor(t, 5*time.Second, "the re-conversion", func() bool {
		b, _ := os.ReadFile(conflist)
		_, err := os.Stat(conf)
		return bytes.Contains(b, []byte(`"cni1"`)) && errors.Is(err, os.ErrNotExist)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := readFileT(t, conf+movedAsideSuffix); !bytes.Equal(got, rewritten) {
		t.Errorf("moved aside %s, want the rewritten conf", got)
	}
	if s := readStatus(t, in); s.State != StateInstalled || s.Conflist != conflist || s.Reinserts != 1 {
		t.Errorf("status %+v", s)
	}
	if err := newInstaller(t, cfg).Uninstall(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, dir)
	if want := (tree{"10-bridge.conf": "-rw-r--r-- " + string(rewritten)}); want.diff(after) != "" {
		t.Errorf("after uninstall:\n%s", want.diff(after))
	}
}

// TestRunWaitsForPrimary: at node boot the primary CNI writes its config
// after the installer starts.
func TestRunWaitsForPrimary(t *testing.T) {
	dir := t.TempDir()
	in := newInstaller(t, testConfig(t, Chained, dir))
	stop := runInstaller(t, in)
	waitFor(t, 5*time.Second, "an error status", func() bool {
		s, err := ReadStatus(in.cfg.StatusFile)
		return err == nil && s.State == StateError && strings.Contains(s.Message, "no primary CNI config")
	})
	path := filepath.Join(dir, "05-cilium.conflist")
	writeFile(t, path, []byte(ciliumConflist), 0o644)
	waitFor(t, 5*time.Second, "the install", func() bool { return hasWirelace(path) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s := readStatus(t, in); s.State != StateInstalled || s.Reinserts != 0 {
		t.Errorf("status %+v", s)
	}
}

// fakeEvents records Warning calls.
type fakeEvents struct {
	ch chan string
}

func (f fakeEvents) Warning(_ context.Context, reason, message string) error {
	f.ch <- reason + ": " + message
	return nil
}

// TestRunStopsFightingCilium is Cilium with cni.exclusive=true, which
// rewrites its own conflist on every change in the dir (here: every
// second, as istio-cni users saw it). The installer must see the fight
// within 30 s, stop writing after a bounded number of writes, and say so.
func TestRunStopsFightingCilium(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "05-cilium.conflist")
	writeFile(t, path, []byte(ciliumConflist), 0o644)
	cfg := testConfig(t, Chained, dir)
	// The default policy; a poll of 250 ms rather than 1 s keeps the worst
	// case (each re-insert seen up to a poll and a rewrite late) well within
	// the 30 s, typical is about 19 s.
	cfg.PollInterval = 250 * time.Millisecond
	cfg.Policy = DefaultPolicy()
	events := fakeEvents{make(chan string, 10)}
	cfg.Events = events
	in := newInstaller(t, cfg)

	// Cilium: renameio.WriteFile of its template, every second.
	ctx, cancel := context.WithCancel(context.Background())
	ciliumDone := make(chan struct{})
	go func() {
		defer close(ciliumDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := writeFileAtomic(path, []byte(ciliumConflist), 0o644); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	defer func() { cancel(); <-ciliumDone }()

	start := time.Now()
	stop := runInstaller(t, in)
	waitFor(t, 30*time.Second, "the conflict", func() bool {
		s, err := ReadStatus(cfg.StatusFile)
		return err == nil && s.State == StateConflict
	})
	t.Logf("conflict seen after %v", time.Since(start).Round(time.Millisecond))

	// No more writes: Cilium's file stays Cilium's.
	time.Sleep(3 * time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if want := 1 + cfg.Policy.MaxReinserts; in.confWrites != want {
		t.Errorf("the installer wrote %d times, want the install and %d re-inserts", in.confWrites, cfg.Policy.MaxReinserts)
	}
	if got := readFileT(t, path); string(got) != ciliumConflist {
		t.Errorf("the installer wrote after the conflict: %q", got)
	}
	s := readStatus(t, in)
	if s.State != StateConflict || s.Conflist != path || s.Reinserts != cfg.Policy.MaxReinserts ||
		!strings.Contains(s.Message, "with Cilium set cni.exclusive=false (Helm value) so other plugins may be chained") {
		t.Errorf("status %+v", s)
	}
	select {
	case ev := <-events.ch:
		if !strings.HasPrefix(ev, ReasonConflict+": ") || !strings.Contains(ev, "cni.exclusive=false") {
			t.Errorf("event %q", ev)
		}
	default:
		t.Error("no Event recorded")
	}
	if len(events.ch) != 0 {
		t.Errorf("%d more Events, want one", len(events.ch))
	}
}

// TestRunStopsFightingStandalone: an exclusive primary renames every other
// config aside (Cilium's *.cilium_bak), here quickly and with a fast policy.
func TestRunStopsFightingStandalone(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, Standalone, dir)
	cfg.Policy = Policy{MaxReinserts: 3, Window: time.Minute, BaseBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	in := newInstaller(t, cfg)
	path := filepath.Join(dir, DefaultConfName)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			os.Rename(path, path+".cilium_bak")
			time.Sleep(5 * time.Millisecond)
		}
	}()
	stop := runInstaller(t, in)
	waitFor(t, 10*time.Second, "the conflict", func() bool {
		s, err := ReadStatus(cfg.StatusFile)
		return err == nil && s.State == StateConflict
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if in.confWrites != 4 {
		t.Errorf("%d writes, want the install and 3 re-inserts", in.confWrites)
	}
}
