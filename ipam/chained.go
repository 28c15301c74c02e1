package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Chained-mode registrations: the addresses a primary CNI gave a pod, which
// the node routes through the mesh. The store allocates nothing here; it
// remembers what is registered so that a restarted daemon announces the
// same addresses, and so that GC and DEL can take them back. They live in
// the same database as allocations for the same crash safety.
//
//	chained  "<network>/<containerID>/<ifName>" -> JSON registration
//
// Network names and container IDs cannot contain '/', so the key is
// unambiguous.

// Registration is one chained attachment's addresses.
type Registration struct {
	Network string
	Key
	Owner
	IPs     []netip.Addr
	Created time.Time
}

func (r Registration) dbKey() []byte { return []byte(r.Network + "/" + r.Key.String()) }

// chainedRecord is the stored form of a Registration.
type chainedRecord struct {
	Network      string       `json:"network"`
	ContainerID  string       `json:"containerID"`
	IfName       string       `json:"ifName"`
	IPs          []netip.Addr `json:"ips"`
	Netns        string       `json:"netns,omitempty"`
	PodNamespace string       `json:"podNamespace,omitempty"`
	PodName      string       `json:"podName,omitempty"`
	PodUID       string       `json:"podUID,omitempty"`
	Created      time.Time    `json:"created"`
}

func validateNetwork(network string) error {
	if network == "" || strings.Contains(network, "/") {
		return fmt.Errorf("%w: network name %q", ErrInvalidKey, network)
	}
	return nil
}

// Register records r, replacing an earlier registration of the same key
// (a repeated ADD). It reports whether anything changed. No address may be
// registered by two attachments: a primary CNI that hands one address to
// two pods is refused rather than routed at random.
func (s *Store) Register(r Registration) (changed bool, err error) {
	if err := validateNetwork(r.Network); err != nil {
		return false, err
	}
	if err := r.Key.validate(); err != nil {
		return false, err
	}
	if len(r.IPs) == 0 {
		return false, fmt.Errorf("%w: registration %s has no addresses", ErrInvalidKey, r.Key)
	}
	for i, a := range r.IPs {
		if !a.IsValid() {
			return false, fmt.Errorf("%w: registration %s: invalid address", ErrInvalidKey, r.Key)
		}
		r.IPs[i] = a.Unmap()
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketChained))
		var old *Registration
		err := b.ForEach(func(k, v []byte) error {
			o, err := decodeRegistration(v)
			if err != nil {
				return fmt.Errorf("registration %s: %w", k, err)
			}
			if string(k) == string(r.dbKey()) {
				old = &o
				return nil
			}
			for _, a := range r.IPs {
				if slices.Contains(o.IPs, a) {
					return fmt.Errorf("%w: %s is already registered by container %s %s (network %s)", ErrInvalidKey, a, o.ContainerID, o.IfName, o.Network)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if old != nil && slices.Equal(old.IPs, r.IPs) {
			return nil
		}
		if old != nil {
			r.Created = old.Created
		}
		if r.Created.IsZero() {
			r.Created = time.Now()
		}
		changed = true
		v, err := json.Marshal(chainedRecord{
			Network: r.Network, ContainerID: r.ContainerID, IfName: r.IfName, IPs: r.IPs,
			Netns: r.Netns, PodNamespace: r.PodNamespace, PodName: r.PodName, PodUID: r.PodUID,
			Created: r.Created,
		})
		if err != nil {
			return err
		}
		return b.Put(r.dbKey(), v)
	})
	if err != nil {
		return false, fmt.Errorf("register %s: %w", r.Key, err)
	}
	return changed, nil
}

// Unregister removes the registration of key in network and reports
// whether there was one. Removing what is not there is not an error.
func (s *Store) Unregister(network string, key Key) (bool, error) {
	if err := validateNetwork(network); err != nil {
		return false, err
	}
	if err := key.validate(); err != nil {
		return false, err
	}
	k := Registration{Network: network, Key: key}.dbKey()
	var found bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketChained))
		found = b.Get(k) != nil
		if !found {
			return nil
		}
		return b.Delete(k)
	})
	if err != nil {
		return false, fmt.Errorf("unregister %s: %w", key, err)
	}
	return found, nil
}

// GCRegistrations removes every registration of network whose key is not
// in valid and returns what it removed. Other networks' registrations are
// never touched: a runtime's valid list covers one network only.
func (s *Store) GCRegistrations(network string, valid []Key) ([]Registration, error) {
	if err := validateNetwork(network); err != nil {
		return nil, err
	}
	keep := make(map[Key]bool, len(valid))
	for _, k := range valid {
		keep[k] = true
	}
	var removed []Registration
	err := s.db.Update(func(tx *bolt.Tx) error {
		removed = nil
		b := tx.Bucket([]byte(bucketChained))
		err := b.ForEach(func(k, v []byte) error {
			r, err := decodeRegistration(v)
			if err != nil {
				return fmt.Errorf("registration %s: %w", k, err)
			}
			if r.Network == network && !keep[r.Key] {
				removed = append(removed, r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range removed {
			if err := b.Delete(r.dbKey()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gc of network %s: %w", network, err)
	}
	return removed, nil
}

// Registrations returns every registration, in key order.
func (s *Store) Registrations() ([]Registration, error) {
	list := []Registration{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketChained)).ForEach(func(k, v []byte) error {
			r, err := decodeRegistration(v)
			if err != nil {
				return fmt.Errorf("registration %s: %w", k, err)
			}
			list = append(list, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list registrations: %w", err)
	}
	return list, nil
}

func decodeRegistration(b []byte) (Registration, error) {
	var r chainedRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return Registration{}, fmt.Errorf("decode registration: %w", err)
	}
	return Registration{
		Network: r.Network,
		Key:     Key{ContainerID: r.ContainerID, IfName: r.IfName},
		Owner:   Owner{Netns: r.Netns, PodNamespace: r.PodNamespace, PodName: r.PodName, PodUID: r.PodUID},
		IPs:     r.IPs,
		Created: r.Created,
	}, nil
}
