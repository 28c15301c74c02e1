package kubeconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://192.0.2.1:6443
users:
- name: u
  user:
    token: t
contexts:
- name: x
  context:
    cluster: c
    user: u
current-context: x
`

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, "wirelace-test")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://192.0.2.1:6443" || cfg.UserAgent != "wirelace-test" || cfg.BearerToken != "t" {
		t.Errorf("config = host %q, user agent %q, token %q", cfg.Host, cfg.UserAgent, cfg.BearerToken)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing")
	_, err := Load(path, "wirelace-test")
	if err == nil || !strings.Contains(err.Error(), "load kubeconfig "+path) || errors.Is(err, ErrNotInCluster) {
		t.Errorf("Load(missing file) = %v, want an error naming the file, not ErrNotInCluster", err)
	}
}

func TestLoadNotInCluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	if _, err := Load("", "wirelace-test"); !errors.Is(err, ErrNotInCluster) {
		t.Errorf("Load(\"\") outside a cluster = %v, want ErrNotInCluster", err)
	}
}
