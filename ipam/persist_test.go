package ipam

import (
	"os"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestReopenKeepsAllocationsAndCursors(t *testing.T) {
	s, path := openTest(t, "10.244.1.0/24", "fd00:10:244:1::/64")
	for i := range 3 {
		mustAllocate(t, s, key(i)) // .2 .3 .4
	}
	mustRelease(t, s, key(1)) // .3
	before, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r := s.Repairs(); len(r) != 0 {
		t.Errorf("clean reopen repaired %v", r)
	}
	if got, want := s.Ranges(), prefixes(t, "10.244.1.0/24", "fd00:10:244:1::/64"); !slices.Equal(got, want) {
		t.Errorf("Ranges after reopen = %v, want %v", got, want)
	}
	after, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("List after reopen = %v, want %v", after, before)
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.Key != b.Key || a.Owner != b.Owner || !slices.Equal(a.IPs, b.IPs) || !a.Created.Equal(b.Created) {
			t.Fatalf("after reopen %+v, want %+v", a, b)
		}
	}

	// Idempotent across the restart.
	again := mustAllocate(t, s, key(0))
	if !slices.Equal(again.IPs, before[0].IPs) {
		t.Fatalf("Allocate(%s) after reopen = %v, want %v", key(0), again.IPs, before[0].IPs)
	}
	// The cursor survived: the next address is .5, not the released .3.
	a := mustAllocate(t, s, key(3))
	if got, want := addrs(a), []string{"10.244.1.5/24", "fd00:10:244:1::5/64"}; !slices.Equal(got, want) {
		t.Fatalf("after reopen got %v, want %v", got, want)
	}
	checkInvariant(t, s)
}

func TestFileMode(t *testing.T) {
	_, path := openTest(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("database mode %v, want 0600", mode)
	}
}

func TestOpenRefusesOtherSchema(t *testing.T) {
	s, path := openTest(t)
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(keySchema), []byte("2"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "schema version 2") {
		t.Fatalf("Open of a schema 2 database: %v", err)
	}
}

func TestOpenRefusesForeignDatabase(t *testing.T) {
	path := t.TempDir() + "/other.db"
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "not a wirelace ipam database") {
		t.Fatalf("Open of a foreign database: %v", err)
	}
}

// TestCrashImage copies the database file while the store is still open, as
// a crash (kill -9, power loss after fsync) would leave it: every call that
// returned is in the copy.
func TestCrashImage(t *testing.T) {
	s, path := openTest(t, "10.244.1.0/24", "fd00:10:244:1::/64")
	want := mustAllocate(t, s, key(0))
	mustAllocate(t, s, key(1))
	mustRelease(t, s, key(1))

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	image := t.TempDir() + "/crashed.db"
	if err := os.WriteFile(image, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !slices.Equal(list[0].IPs, want.IPs) {
		t.Fatalf("crash image holds %v, want only %v", list, want)
	}
	if a := mustAllocate(t, c, key(2)); a.IPs[0].String() != "10.244.1.4/24" {
		t.Fatalf("crash image lost the cursor: got %v, want 10.244.1.4/24", a.IPs)
	}
	checkInvariant(t, c)
}
