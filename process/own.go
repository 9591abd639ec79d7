package process

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Ownership is this node's claim on one partition. With
// Deps.Dynamic false, Run owns every partition at epoch 0 with no fence
// (one node, or a cluster where every node sessionizes everything).
type Ownership struct {
	// Epoch identifies the claim (the lease's epoch); it is recorded
	// beside the partition's checkpoint by the first commit under it.
	Epoch uint64
	// Valid is asked, without a round trip, before every state commit of
	// the partition; false refuses the commit (nil: always valid).
	Valid func() bool
	// Check proves the claim with a round trip before a side effect that
	// leaves this node: publishing sessions, identity-merge controls,
	// forget reports (nil: nothing to prove).
	Check func(ctx context.Context) error
}

func (o Ownership) valid() bool { return o.Valid == nil || o.Valid() }

func (o Ownership) check(ctx context.Context) error {
	if o.Check == nil {
		return nil
	}
	return o.Check(ctx)
}

// ErrNotRunning is returned by Own and Disown once the sessionizer has
// stopped (or before Run started, when their context ends first).
var ErrNotRunning = errors.New("process: sessionizer not running")

// command asks a worker to start or stop consuming a partition.
type command struct {
	ctx  context.Context
	id   int
	own  *Ownership // nil: disown
	done chan error
}

// Own starts consuming partition id under o: its worker loads the
// checkpoint and opens the consumer at checkpoint + 1. It returns once the
// partition is open (or refused by the sequence regression check), and
// keeps retrying a failing open until ctx ends. Only with Deps.Dynamic.
func (p *Processor) Own(ctx context.Context, id int, o Ownership) error {
	return p.command(ctx, command{ctx: ctx, id: id, own: &o})
}

// Disown stops consuming partition id: its in-flight batch is committed
// (if the ownership is still valid) and acked, its memory dropped and its
// outbox relayed once more under the ownership's Check. Only with
// Deps.Dynamic.
func (p *Processor) Disown(ctx context.Context, id int) error {
	o, ok := p.ownership(id)
	if err := p.command(ctx, command{ctx: ctx, id: id}); err != nil {
		return err
	}
	if ok {
		if err := p.drainPart(ctx, id, o, true); err != nil && ctx.Err() == nil {
			p.log.Warn("relaying a released partition's outbox", "partition", id, "err", err)
		}
	}
	return nil
}

func (p *Processor) command(ctx context.Context, c command) error {
	if c.id < 0 || c.id >= p.deps.Partitions {
		return fmt.Errorf("process: partition %d out of range", c.id)
	}
	if !p.deps.Dynamic {
		return errors.New("process: partitions are assigned statically (Deps.Dynamic is false)")
	}
	c.done = make(chan error, 1)
	select {
	case p.cmds[p.owner(c.id)] <- c:
	case <-p.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.done:
		return err
	case <-p.done:
		return ErrNotRunning
	case <-ctx.Done():
		// The worker answers into the buffered done later: a Disown
		// still takes effect after the in-flight batch.
		return ctx.Err()
	}
}

// setOwned records (o != nil) or forgets the ownership the relay uses.
func (p *Processor) setOwned(id int, o *Ownership) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if o == nil {
		delete(p.owned, id)
		delete(p.progress, id)
		delete(p.dupsDone, id) // the next owner starts from the last record
	} else {
		p.owned[id] = *o
		if _, ok := p.progress[id]; !ok {
			p.progress[id] = progress{at: time.Now()}
		}
	}
	p.m.owned.Set(float64(len(p.owned)))
}

func (p *Processor) ownership(id int) (Ownership, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o, ok := p.owned[id]
	return o, ok
}

// ownedParts is a copy of the owned partitions and their ownerships.
func (p *Processor) ownedParts() map[int]Ownership {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]Ownership, len(p.owned))
	for id, o := range p.owned {
		out[id] = o
	}
	return out
}
