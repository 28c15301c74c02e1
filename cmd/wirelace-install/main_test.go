package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wirelace/wirelace/install/cniinstall"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags(nil, env(map[string]string{"NODE_NAME": "node-a"}))
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	want := cniinstall.Config{
		Mode: cniinstall.Standalone, ConfDir: "/etc/cni/net.d", BinDir: "/opt/cni/bin", BinSrcDir: "/opt/wirelace/bin",
		Binaries: []string{"wirelace", "wirelace-ipam"}, ConfName: "10-wirelace.conflist", NetworkName: "wirelace",
		Socket: "/run/wirelace/wirelaced.sock", StatusFile: "/run/wirelace/install-status.json",
		PollInterval: time.Second, Policy: cniinstall.DefaultPolicy(),
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults\n%+v\nwant\n%+v", c, want)
	}
	if o.nodeName != "node-a" || o.once || o.uninstall || o.removeBinaries || o.logLevel != slog.LevelInfo {
		t.Errorf("options %+v", o)
	}

	o, err = parseFlags([]string{"--mode=chained", "--primary-conf", "05-cilium.conflist", "--binaries", "wirelace, portmap",
		"--max-reinserts", "3", "--reinsert-window", "1m", "--node-name", "n", "--once", "--log-level", "debug"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Mode != cniinstall.Chained || o.cfg.PrimaryConf != "05-cilium.conflist" || !reflect.DeepEqual(o.cfg.Binaries, []string{"wirelace", "portmap"}) ||
		o.cfg.Policy.MaxReinserts != 3 || o.cfg.Policy.Window != time.Minute || o.nodeName != "n" || !o.once || o.logLevel != slog.LevelDebug {
		t.Errorf("options %+v", o)
	}
	if o, _ = parseFlags([]string{"--binaries="}, env(nil)); o.cfg.Binaries != nil {
		t.Errorf("--binaries= copies %v, want none", o.cfg.Binaries)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "exclusive"}, "--mode"},
		{[]string{"--primary-conf", "05-cilium.conflist"}, "--primary-conf"},
		{[]string{"--mode=chained", "--primary-conf", "/etc/cni/net.d/05-cilium.conflist"}, "--primary-conf"},
		{[]string{"--conf-name", "10-wirelace.conf"}, "--conf-name"},
		{[]string{"--socket", "wirelaced.sock"}, "--socket"},
		{[]string{"--binaries", "wirelace,,x"}, "--binaries"},
		{[]string{"--binaries", "../wirelace"}, "--binaries"},
		{[]string{"--once", "--uninstall"}, "--once and --uninstall"},
		{[]string{"--remove-binaries"}, "--remove-binaries"},
		{[]string{"--poll-interval", "0s"}, "--poll-interval"},
		{[]string{"--max-reinserts", "0"}, "--max-reinserts"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	} {
		if _, err := parseFlags(tc.args, env(nil)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v, want an error about %s", tc.args, err, tc.want)
		}
	}
}

// TestRunOnceThenUninstall goes through the command as an init container
// and a later uninstall would, on temporary dirs.
func TestRunOnceThenUninstall(t *testing.T) {
	conf, bin, src, status := t.TempDir(), t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "status.json")
	cilium, err := os.ReadFile("../../install/cniinstall/testdata/05-cilium.conflist")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(conf, "05-cilium.conflist"), cilium, 0o644)
	os.WriteFile(filepath.Join(src, "wirelace"), []byte("plugin"), 0o755)
	os.WriteFile(filepath.Join(src, "wirelace-ipam"), []byte("ipam"), 0o755)
	log := slog.New(slog.DiscardHandler)
	common := []string{"--mode=chained", "--conf-dir", conf, "--bin-dir", bin, "--bin-src-dir", src, "--status-file", status}

	o, err := parseFlags(append(common, "--once"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), o, log); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(conf, "05-cilium.conflist"))
	if !strings.Contains(string(b), `{"type":"wirelace","socket":"/run/wirelace/wirelaced.sock"}`) {
		t.Fatalf("not installed: %s", b)
	}
	if s, err := cniinstall.ReadStatus(status); err != nil || s.State != cniinstall.StateInstalled {
		t.Errorf("status %+v, %v", s, err)
	}

	o, err = parseFlags(append(common, "--uninstall", "--remove-binaries"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), o, log); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(conf, "05-cilium.conflist")); string(b) != string(cilium) {
		t.Errorf("not restored: %q", b)
	}
	if left, _ := os.ReadDir(bin); len(left) != 0 {
		t.Errorf("binaries left: %v", left)
	}
	if left, _ := os.ReadDir(conf); len(left) != 1 {
		t.Errorf("conf dir after uninstall: %v", left)
	}
}

// TestRunWatchesUntilCancelled: the sidecar exits cleanly on SIGTERM (ctx),
// and without credentials it runs without Events.
func TestRunWatchesUntilCancelled(t *testing.T) {
	conf := t.TempDir()
	o, err := parseFlags([]string{"--conf-dir", conf, "--binaries=", "--status-file", filepath.Join(t.TempDir(), "s.json"), "--node-name", "n"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a cluster
	if err := run(ctx, o, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(conf, "10-wirelace.conflist")); err != nil {
		t.Error(err)
	}

	o.kubeconfig = filepath.Join(t.TempDir(), "missing")
	if err := run(ctx, o, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "load kubeconfig "+o.kubeconfig) {
		t.Errorf("a --kubeconfig that does not load: %v", err)
	}
}
