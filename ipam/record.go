package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// record is the stored form of an Allocation. It is a separate type so that
// the exported one can change without changing the database format.
type record struct {
	ContainerID  string         `json:"containerID"`
	IfName       string         `json:"ifName"`
	IPs          []netip.Prefix `json:"ips"`
	Network      string         `json:"network,omitempty"`
	Netns        string         `json:"netns,omitempty"`
	PodNamespace string         `json:"podNamespace,omitempty"`
	PodName      string         `json:"podName,omitempty"`
	PodUID       string         `json:"podUID,omitempty"`
	Created      time.Time      `json:"created"`
}

func encodeAllocation(a Allocation) ([]byte, error) {
	b, err := json.Marshal(record{
		ContainerID:  a.ContainerID,
		IfName:       a.IfName,
		IPs:          a.IPs,
		Network:      a.Network,
		Netns:        a.Netns,
		PodNamespace: a.PodNamespace,
		PodName:      a.PodName,
		PodUID:       a.PodUID,
		Created:      a.Created,
	})
	if err != nil {
		return nil, fmt.Errorf("encode allocation %s: %w", a.Key, err)
	}
	return b, nil
}

func decodeAllocation(b []byte) (Allocation, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return Allocation{}, fmt.Errorf("decode allocation: %w", err)
	}
	for _, p := range r.IPs {
		if !p.IsValid() {
			return Allocation{}, fmt.Errorf("decode allocation %s/%s: invalid address", r.ContainerID, r.IfName)
		}
	}
	return Allocation{
		Key: Key{ContainerID: r.ContainerID, IfName: r.IfName},
		Owner: Owner{
			Network:      r.Network,
			Netns:        r.Netns,
			PodNamespace: r.PodNamespace,
			PodName:      r.PodName,
			PodUID:       r.PodUID,
		},
		IPs:     r.IPs,
		Created: r.Created,
	}, nil
}
