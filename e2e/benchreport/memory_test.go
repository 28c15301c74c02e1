package benchreport

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMemorySection(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	b, err := json.Marshal(Memory{IdleSeconds: 60, Processes: []ProcessMemory{
		{Name: "wirelace sender", BeforeMiB: 31, AfterMiB: 72, PeakMiB: 90, IdleMiB: 35},
		{Name: "stock receiver", BeforeMiB: 9, AfterMiB: 240, PeakMiB: 250, IdleMiB: 238},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, MemoryFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## Memory around bulk traffic",
		"| wirelace sender | 31 MiB | 72 MiB | 90 MiB | 35 MiB |",
		"| stock receiver | 9 MiB | 240 MiB | 250 MiB | 238 MiB |",
		"after 60 s idle",
		"![memory](memory.svg)",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	if fi, err := os.Stat(filepath.Join(out, "memory.svg")); err != nil || fi.Size() == 0 {
		t.Errorf("memory.svg not written: %v", err)
	}
}
