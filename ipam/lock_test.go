package ipam

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSecondOpenFailsLocked(t *testing.T) {
	_, path := openTest(t)
	const timeout = 300 * time.Millisecond

	start := time.Now()
	s2, err := open(path, timeout)
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a database in use succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error %v does not wrap ErrLocked", err)
	}
	if want := "ipam database " + path + " is locked by another process"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if elapsed > timeout+time.Second {
		t.Errorf("gave up after %s, timeout %s", elapsed, timeout)
	}
}

// TestOpenLockTimeout checks Open itself: it waits its 5s, then fails.
func TestOpenLockTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the lock timeout")
	}
	t.Parallel()
	_, path := openTest(t)
	start := time.Now()
	_, err := Open(path)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if elapsed < lockTimeout-time.Second || elapsed > lockTimeout+2*time.Second {
		t.Fatalf("second Open gave up after %s, want about %s", elapsed, lockTimeout)
	}
	t.Log(err)
}
