package ipam

import (
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// schemaVersion is the version of the layout described in doc.go. Bump it
// for any change an older daemon could misread, and teach init to migrate.
const schemaVersion = 1

// Bucket and key names (see doc.go). Strings, not []byte variables, so
// nothing at package level can be modified.
const (
	bucketMeta        = "meta"
	bucketCursors     = "cursors"
	bucketAllocations = "allocations"
	bucketUsed4       = "used4"
	bucketUsed6       = "used6"
	// bucketChained holds chained-mode registrations. It came after
	// schema 1 was released: an older database gets it on open (adding a
	// bucket is something an older daemon does not misread).
	bucketChained = "chained"

	keySchema = "schema"
	keyRanges = "ranges"
)

func allBuckets() []string {
	return []string{bucketMeta, bucketCursors, bucketAllocations, bucketUsed4, bucketUsed6}
}

// initLayout creates the buckets of a new database, or checks the schema
// version of an existing one. It refuses a file that holds buckets but no
// schema version: that is not ours, and writing into it would be worse than
// stopping.
func initLayout(tx *bolt.Tx) error {
	meta := tx.Bucket([]byte(bucketMeta))
	if meta == nil {
		var foreign []string
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			foreign = append(foreign, string(name))
			return nil
		})
		if len(foreign) > 0 {
			return fmt.Errorf("not a wirelace ipam database (buckets %q but no %q)", foreign, bucketMeta)
		}
		for _, name := range allBuckets() {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta = tx.Bucket([]byte(bucketMeta))
		if err := meta.Put([]byte(keySchema), []byte(strconv.Itoa(schemaVersion))); err != nil {
			return err
		}
		return addLaterBuckets(tx)
	}

	v := meta.Get([]byte(keySchema))
	version, err := strconv.Atoi(string(v))
	if err != nil {
		return fmt.Errorf("bad schema version %q: %w", v, err)
	}
	if version != schemaVersion {
		return fmt.Errorf("schema version %d is not supported (this wirelaced reads version %d)", version, schemaVersion)
	}
	for _, name := range allBuckets() {
		if tx.Bucket([]byte(name)) == nil {
			return fmt.Errorf("bucket %s is missing", name)
		}
	}
	return addLaterBuckets(tx)
}

// addLaterBuckets creates the buckets added to schema 1 since its release.
func addLaterBuckets(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists([]byte(bucketChained)); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketChained, err)
	}
	return nil
}
