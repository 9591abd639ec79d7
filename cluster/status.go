package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Status is the cluster as the KV buckets tell it.
type Status struct {
	Members []Member    `json:"members"`
	Leases  []LeaseInfo `json:"leases"`
}

// Member is one live member.
type Member struct {
	Node   string            `json:"node"`
	Leases []string          `json:"leases,omitempty"`
	Info   map[string]string `json:"info,omitempty"`
}

// LeaseInfo is one lease's holder.
type LeaseInfo struct {
	Name     string `json:"name"`
	Holder   string `json:"holder"`
	Epoch    uint64 `json:"epoch"`
	Revision uint64 `json:"revision"`
	// Desired is the live member rendezvous hashing places it on; a
	// difference from Holder is a handover in progress.
	Desired string `json:"desired"`
}

// Status reads the members and every lease.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	m.mu.Lock()
	members, kv := m.members, m.kv
	m.mu.Unlock()
	if members == nil {
		return Status{}, errors.New("cluster: not open")
	}
	live, err := m.readMembers(ctx, members)
	if err != nil {
		return Status{}, fmt.Errorf("reading members: %w", err)
	}
	var st Status
	for _, r := range live {
		st.Members = append(st.Members, Member{Node: r.Node, Leases: r.Leases, Info: r.Info})
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("reading leases: %w", err)
	}
	for k := range keys.Keys() {
		e, err := m.get(ctx, kv, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return Status{}, fmt.Errorf("reading lease %s: %w", k, err)
		}
		rec, err := decodeLease(e.Value())
		if err != nil {
			return Status{}, fmt.Errorf("decoding lease %s: %w", k, err)
		}
		st.Leases = append(st.Leases, LeaseInfo{Name: k, Holder: rec.Holder, Epoch: rec.epoch(e.Revision()),
			Revision: e.Revision(), Desired: desired(k, live)})
	}
	return st, nil
}
