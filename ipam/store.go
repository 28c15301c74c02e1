package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// lockTimeout bounds how long Open waits for bbolt's file lock. A second
// daemon on the node (a botched upgrade, a stuck old pod) must fail with a
// clear error rather than hang or share the file.
const lockTimeout = 5 * time.Second

// Store is the node's allocation database. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string

	// mu guards ranges, a copy of the stored ranges for Ranges. SetRanges
	// holds it across its transaction so the copy never disagrees with the
	// database. Allocate reads the ranges inside its own transaction.
	mu     sync.RWMutex
	ranges []netip.Prefix

	repairs []string // set once by Open
}

// Open opens (or creates, mode 0600) the database at path, creating its
// directory if needed. If another process has it open, Open gives up after
// a few seconds with an error wrapping ErrLocked.
//
// Open checks that the used-address indexes agree with the allocations,
// repairs what it safely can (see Repairs) and refuses a database it cannot
// repair.
func Open(path string) (*Store, error) { return open(path, lockTimeout) }

func open(path string, timeout time.Duration) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create ipam state directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("ipam database %s is %w (gave up after %s; is another wirelaced running?)", path, ErrLocked, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open ipam database %s: %w", path, err)
	}

	s := &Store{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := initLayout(tx); err != nil {
			return err
		}
		repairs, err := checkIndex(tx)
		if err != nil {
			return err
		}
		s.repairs = repairs
		s.ranges, err = loadRanges(tx)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("ipam database %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database. Every completed call is already on disk.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close ipam database %s: %w", s.path, err)
	}
	return nil
}

// Repairs describes what Open had to fix in the used-address indexes, for
// the daemon to log. It is empty when the database was consistent.
func (s *Store) Repairs() []string { return slices.Clone(s.repairs) }
