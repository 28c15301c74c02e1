package main

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/wirelace/wirelace/internal/testcert"
)

func TestCertReload(t *testing.T) {
	certFile, keyFile, _ := testcert.Files(t)
	r, err := newCertReloader(certFile, keyFile, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	r.interval = 0
	first, _ := r.GetCertificate(nil)

	// A renewed certificate replaces the files.
	cert2, key2, _ := testcert.Files(t)
	for _, f := range [][2]string{{cert2, certFile}, {key2, keyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Minute)
		os.Chtimes(f[1], later, later)
	}
	second, _ := r.GetCertificate(nil)
	if bytes.Equal(first.Certificate[0], second.Certificate[0]) {
		t.Fatalf("certificate not reloaded")
	}

	// A broken rewrite keeps the last good certificate.
	os.WriteFile(certFile, []byte("garbage"), 0o600)
	later := time.Now().Add(2 * time.Minute)
	os.Chtimes(certFile, later, later)
	third, _ := r.GetCertificate(nil)
	if third != second {
		t.Fatalf("a broken certificate file replaced the good one")
	}

	if _, err := newCertReloader(certFile+".missing", keyFile, quietLog()); err == nil {
		t.Fatalf("missing certificate file accepted")
	}
}
