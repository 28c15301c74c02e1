package benchreport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMemorySection(t *testing.T) {
	md, out := renderOnly(t, MemoryFile, Memory{IdleSeconds: 60, Processes: []ProcessMemory{
		{Name: "wirelace sender", BeforeMiB: 31, AfterMiB: 72, PeakMiB: 90, IdleMiB: 35, HeapMiB: 50, PoolsMiB: 40},
		{Name: "stock receiver", BeforeMiB: 9, AfterMiB: 240, PeakMiB: 250, IdleMiB: 238},
	}})
	for _, want := range []string{
		"## Memory around bulk traffic",
		"| wirelace sender | 31 MiB | 72 MiB | 90 MiB | 35 MiB |",
		"| stock receiver | 9 MiB | 240 MiB | 250 MiB | 238 MiB |",
		"after 60 s idle",
		"wirelace sender 50 MiB in use, 40 MiB of it (80%) in wireguard-go's packet pools",
		"![memory](memory.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	if fi, err := os.Stat(filepath.Join(out, "memory.svg")); err != nil || fi.Size() == 0 {
		t.Errorf("memory.svg not written: %v", err)
	}
}
