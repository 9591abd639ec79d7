package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/cluster"
	"github.com/clickpipe/clickpipe/serve"
)

// queryRouting is the query API of a node under partition ownership
// (docs/cluster.md, "Queries under partition ownership"):
//
//   - Responder: pass it to the partition hooks (Acquired/Released); it
//     answers the queries other nodes route to this node's partitions.
//   - Router: mount it on the query listener in place of the API.
//   - Epochs: run it as a component that starts before the query listener
//     and stops after it; it watches the partition leases.
type queryRouting struct {
	Responder *serve.Responder
	Router    *serve.Router
	Epochs    *partitionEpochs
}

// newQueryRouting builds the query routing of node over its buffer (the
// in-process NATS connection, the leases bucket) and its query API.
func newQueryRouting(buf *buffer.Buffer, api *serve.API, node string, rcfg serve.RouterConfig, log *slog.Logger,
	reg prometheus.Registerer) (*queryRouting, error) {
	js := buf.JetStream()
	if js == nil {
		return nil, errors.New("query routing: the buffer is not open")
	}
	resp, err := serve.NewResponder(api, js.Conn(), node, log)
	if err != nil {
		return nil, fmt.Errorf("query routing: %w", err)
	}
	epochs := newPartitionEpochs(js, log)
	router, err := serve.NewRouter(api, resp, epochs, js.Conn(), rcfg, log, reg)
	if err != nil {
		return nil, fmt.Errorf("query routing: %w", err)
	}
	return &queryRouting{Responder: resp, Router: router, Epochs: epochs}, nil
}

// partitionEpochs is the current epoch of every partition as a watch of
// the partition leases tells it (docs/format/cluster.md); it implements
// serve.Owners.
type partitionEpochs struct {
	js  jetstream.JetStream
	log *slog.Logger

	mu     sync.Mutex
	epochs map[int]uint64
	synced bool // the watch delivered every lease present when it began

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

var _ serve.Owners = (*partitionEpochs)(nil)

func newPartitionEpochs(js jetstream.JetStream, log *slog.Logger) *partitionEpochs {
	return &partitionEpochs{js: js, log: log, epochs: map[int]uint64{},
		stop: make(chan struct{}), done: make(chan struct{})}
}

// Epoch is the lowest epoch an answer about partition p may carry: its
// holder's epoch, or after a release the revision of the release (every
// later holder's epoch is higher); 0 before anything is known.
func (e *partitionEpochs) Epoch(p int) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.epochs[p]
}

// Run watches the partition leases until Shutdown or hard is cancelled.
func (e *partitionEpochs) Run(hard context.Context) error {
	defer close(e.done)
	ctx, cancel := context.WithCancel(hard)
	defer cancel()
	go func() {
		select {
		case <-e.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	kv, err := e.js.KeyValue(ctx, cluster.LeasesBucket)
	if err != nil {
		return fmt.Errorf("watching partition leases: binding %s: %w", cluster.LeasesBucket, err)
	}
	// KV keys are subject tokens: "partition-*" would be no wildcard, so
	// the watch takes every lease and apply keeps the partitions'.
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching partition leases: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ent, ok := <-w.Updates():
			if !ok {
				return errors.New("watching partition leases: the watch ended")
			}
			if ent == nil {
				e.markSynced()
				continue
			}
			e.apply(ent)
		}
	}
}

func (e *partitionEpochs) markSynced() {
	e.mu.Lock()
	e.synced = true
	e.mu.Unlock()
}

// Ready reports nil once the watch has read every partition lease; until
// then the router knows no epoch and accepts any answer (for a readiness
// check of the query listener).
func (e *partitionEpochs) Ready() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.synced {
		return errors.New("query routing: partition leases not read yet")
	}
	return nil
}

// Shutdown stops the watch and waits for Run.
func (e *partitionEpochs) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() { close(e.stop) })
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// apply records one lease write. Epochs only grow: a deleted lease
// leaves the revision of its deletion.
func (e *partitionEpochs) apply(ent jetstream.KeyValueEntry) {
	suffix, ok := strings.CutPrefix(ent.Key(), partitionLeasePrefix)
	p, err := strconv.Atoi(suffix)
	if !ok || err != nil {
		return
	}
	epoch := ent.Revision()
	if ent.Operation() == jetstream.KeyValuePut {
		var rec struct {
			Epoch uint64 `json:"epoch"`
		}
		if err := json.Unmarshal(ent.Value(), &rec); err != nil {
			e.log.Warn("unreadable partition lease", "key", ent.Key(), "err", err)
			return
		}
		if rec.Epoch != 0 {
			epoch = rec.Epoch
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.epochs[p] = max(e.epochs[p], epoch)
}
