package regulation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickpipe/clickpipe/event"
)

// maxCASRetries bounds the read-modify-write attempts of one update.
const maxCASRetries = 16

// update changes one regulation record with compare-and-set: fn sees the
// stored record and returns false to write nothing.
func (r *Registry) update(ctx context.Context, id string, fn func(reg *Regulation) bool) error {
	for range maxCASRetries {
		e, err := r.deps.Regulations.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("reading regulation %s: %w", id, err)
		}
		var reg Regulation
		if err := json.Unmarshal(e.Value(), &reg); err != nil {
			return fmt.Errorf("regulation %s: %w", id, err)
		}
		if !fn(&reg) {
			return nil
		}
		reg.complete(r.now())
		b, err := json.Marshal(reg)
		if err != nil {
			return err
		}
		rev, err := r.deps.Regulations.Update(ctx, id, b, e.Revision())
		if errors.Is(err, jetstream.ErrKeyExists) { // another writer: read again
			continue
		}
		if err != nil {
			return fmt.Errorf("updating regulation %s: %w", id, err)
		}
		r.putReg(id, b, rev, false)
		if reg.Status == StatusCompleted {
			r.log.Info("regulation completed", "regulation", id, "type", reg.Type)
		}
		return nil
	}
	return fmt.Errorf("updating regulation %s: %d concurrent changes in a row", id, maxCASRetries)
}

// Progress records one store's progress on a regulation; once every store
// is done the regulation is completed (status and completion time).
func (r *Registry) Progress(ctx context.Context, regID, store string, p StoreProgress) error {
	return r.update(ctx, regID, func(reg *Regulation) bool {
		if _, ok := reg.Stores[store]; !ok {
			return false // nothing to do in this store for this type
		}
		if p.Updated.IsZero() {
			p.Updated = r.now().UTC()
		}
		reg.Stores[store] = p
		return true
	})
}

// Forgotten records that the sessionizer applied regID's forget message in
// partition (found ids with state, removed keys). Each partition counts
// once; the state store is done when every partition has reported.
func (r *Registry) Forgotten(ctx context.Context, regID string, partition int, found, removed int64) error {
	err := r.update(ctx, regID, func(reg *Regulation) bool {
		i := slices.Index(reg.StatePartitions, partition)
		if i < 0 {
			return false
		}
		reg.StatePartitions = slices.Delete(reg.StatePartitions, i, i+1)
		p := reg.Stores[StoreState]
		p.Found += found
		p.Removed += removed
		p.Updated = r.now().UTC()
		if len(reg.StatePartitions) == 0 {
			p.Status = StatusDone
		}
		reg.Stores[StoreState] = p
		return true
	})
	if errors.Is(err, ErrNotFound) {
		r.log.Warn("forget applied for an unknown regulation; ignored", "regulation", regID, "partition", partition)
		return nil
	}
	return err
}

// Run publishes the forget messages of new erasures to their partitions
// until Shutdown or until hard is cancelled.
func (r *Registry) Run(hard context.Context) error {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if err := r.publishForgets(hard); err != nil && hard.Err() == nil {
			r.log.Warn("publishing forget messages; retrying", "err", err)
		}
		select {
		case <-hard.Done():
			return nil
		case <-r.stopping:
			return nil
		case <-r.wake:
		case <-t.C:
		}
	}
}

// publishForgets publishes, for every erasure not yet published, one
// forget message per partition holding some of its ids, then marks it
// published. A crash in between publishes again: the Nats-Msg-Id drops a
// copy within the stream's duplicate window, and applying a forget twice
// removes nothing the second time.
func (r *Registry) publishForgets(ctx context.Context) error {
	if r.deps.Publisher == nil {
		return nil
	}
	for _, reg := range r.ordered() {
		if reg.ForgetPublished || len(reg.StatePartitions) == 0 {
			continue
		}
		byPart := map[int][]string{}
		for _, id := range reg.UserIDs {
			p := event.Partition(id, r.deps.Partitions)
			byPart[p] = append(byPart[p], id)
		}
		for _, p := range reg.StatePartitions {
			body, err := json.Marshal(event.Forget{Regulation: reg.ID, IDs: byPart[p]})
			if err != nil {
				return err
			}
			hdr := map[string]string{event.HeaderControl: event.ControlForget, "Nats-Msg-Id": fmt.Sprintf("forget/%s/%d", reg.ID, p)}
			if _, err := r.deps.Publisher.Publish(ctx, p, body, hdr); err != nil {
				return fmt.Errorf("regulation %s partition %d: %w", reg.ID, p, err)
			}
		}
		if err := r.update(ctx, reg.ID, func(x *Regulation) bool {
			x.ForgetPublished = true
			return true
		}); err != nil {
			return err
		}
	}
	return nil
}

// Shutdown stops Run. Nothing is in flight: every request is stored
// before it is answered, and an unpublished forget is published by the
// next start.
func (r *Registry) Shutdown(context.Context) error {
	r.stopOnce.Do(func() { close(r.stopping) })
	return nil
}
