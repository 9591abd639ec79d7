package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/cluster"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/snapshot"
)

// partitionHook is told when this node gains or loses a partition
// (cluster.partition_ownership): state restore, query routing.
type partitionHook interface {
	// Acquired runs before the sessionizer starts partition p under
	// epoch; an error gives the lease up (another node may take it).
	Acquired(ctx context.Context, p int, epoch uint64) error
	// Released runs after the sessionizer stopped p (graceful: its last
	// batch committed under the lease), or, when the lease was lost, as
	// soon as the loss is known (graceful false: p's commits are refused
	// from then on, and a successor may start an eighth of the ttl later).
	Released(ctx context.Context, p int, graceful bool)
}

// partitionLeasePrefix + "<p>" is the lease guarding partition p's
// sessionizer (a key of cluster.LeasesBucket).
const partitionLeasePrefix = "partition-"

// partitionLeaseName is the lease guarding partition p's sessionizer.
func partitionLeaseName(p int) string { return partitionLeasePrefix + strconv.Itoa(p) }

// partitionOwner hands each partition whose lease this node holds to the
// sessionizer, fenced by the lease: commits test Holding.Valid, side
// effects that leave the node call Holding.Check.
type partitionOwner struct {
	proc  *process.Processor
	hooks []partitionHook
	// prepare, if not nil, readies partition p on this node ahead of a
	// takeover (cluster.Manager.Prepare): the snapshot restore, then the
	// consumer at the restored checkpoint + 1.
	prepare func(ctx context.Context, p int)
	log     *slog.Logger
	// stopWait bounds Disown and the Released hooks after the lease's
	// work was cancelled (the lease manager waits 5/12 of the ttl for a
	// graceful stop, a sixth for a lost lease's).
	stopWait time.Duration
	// holdings is each partition's current holding (p → *cluster.Holding)
	// while its work runs: the responder's validity check.
	holdings sync.Map
}

// valid is whether this node holds partition p's lease at epoch and the
// holding is still valid (renewed within two thirds of the ttl).
func (o *partitionOwner) valid(p int, epoch uint64) bool {
	v, ok := o.holdings.Load(p)
	if !ok {
		return false
	}
	h := v.(*cluster.Holding)
	return h.Epoch == epoch && h.Valid()
}

// openPartitionOwnership makes the sessionizer's partitions dynamic and
// opens the duplicate lists' stream when cluster.partition_ownership is
// on (no-op otherwise).
func (n *node) openPartitionOwnership(ctx context.Context, deps *process.Deps) error {
	c := n.cfg.Cluster
	if !c.Enabled || !c.PartitionOwnership {
		return nil
	}
	octx, cancel := context.WithTimeout(ctx, c.JoinTimeout)
	defer cancel()
	var err error
	if n.dups, err = openLakeDups(octx, n.buf, n.child("partitions")); err != nil {
		return err
	}
	deps.Dynamic, deps.Dups = true, n.dups
	return nil
}

// register registers a lease per partition with m (before m
// runs).
func (o *partitionOwner) register(m *cluster.Manager, partitions int) {
	for p := range partitions {
		m.Register(partitionLeaseName(p), func(ctx context.Context, h *cluster.Holding) error {
			return o.own(ctx, p, h)
		})
		if o.prepare != nil {
			m.Prepare(partitionLeaseName(p), func(ctx context.Context) { o.prepare(ctx, p) })
		}
	}
}

// own is the work of lease partition-<p>: hooks, Own, wait for the end of
// the lease, Disown, hooks in reverse.
func (o *partitionOwner) own(ctx context.Context, p int, h *cluster.Holding) error {
	o.holdings.Store(p, h)
	defer o.holdings.CompareAndDelete(p, h)
	began := time.Now()
	for i, hk := range o.hooks {
		if err := hk.Acquired(ctx, p, h.Epoch); err != nil {
			o.released(ctx, p, o.hooks[:i], false)
			return fmt.Errorf("partition %d epoch %d: %w", p, h.Epoch, err)
		}
	}
	hooked := time.Now()
	err := o.proc.Own(ctx, p, fence(h))
	switch {
	case err == nil:
		// How long the hooks (restore, responder) and the sessionizer's
		// open (checkpoint, stream state, consumer) took: a handover's
		// own part, after the lease.
		o.log.Info("owning partition", "partition", p, "epoch", h.Epoch,
			"hooks", hooked.Sub(began).Round(time.Millisecond).String(),
			"open", time.Since(hooked).Round(time.Millisecond).String())
		<-ctx.Done()
	case errors.Is(err, process.ErrNotRunning):
		err = nil // the sessionizer drained first (shutdown order)
		<-ctx.Done()
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.stopWait)
	defer cancel()
	lost := !h.Released()
	if lost {
		// The partition's commits are refused from the loss on: the
		// hooks let go at once, before the successor can start.
		o.released(dctx, p, o.hooks, false)
	}
	derr := o.proc.Disown(dctx, p)
	if derr != nil && !errors.Is(derr, process.ErrNotRunning) {
		o.log.Warn("stopping partition", "partition", p, "err", derr)
	}
	// ErrNotRunning: the sessionizer drained first (shutdown order), its
	// last commits made under this still valid lease.
	graceful := err == nil && (derr == nil || errors.Is(derr, process.ErrNotRunning)) && !lost
	o.log.Info("released partition", "partition", p, "epoch", h.Epoch, "graceful", graceful)
	if !lost {
		o.released(dctx, p, o.hooks, graceful)
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (o *partitionOwner) released(ctx context.Context, p int, hooks []partitionHook, graceful bool) {
	for i := len(hooks) - 1; i >= 0; i-- {
		hooks[i].Released(ctx, p, graceful)
	}
}

// fence is the sessionizer's view of a partition lease.
func fence(h *cluster.Holding) process.Ownership {
	if brokenNoFence {
		return process.Ownership{Epoch: h.Epoch}
	}
	return process.Ownership{Epoch: h.Epoch, Valid: h.Valid, Check: h.Check}
}

// partitionHooks builds what follows partition ownership on this node, in
// the order a partition is acquired: its state restored from the latest
// snapshot (when the archive gives an object store), then the responder
// that answers the queries routed to it.
func (n *node) partitionHooks(ctx context.Context) ([]partitionHook, error) {
	var hooks []partitionHook
	if n.cfg.Archive.Enabled {
		objs, err := archive.OpenStore(ctx, n.cfg.Archive)
		if err != nil {
			return nil, fmt.Errorf("opening the object store for partition snapshots: %w", err)
		}
		scfg := n.cfg.Snapshot
		scfg.StreamRetention = n.cfg.Buffer.Retention
		if n.snaps, err = snapshot.New(scfg, n.state, objs, n.child("snapshot"), n.reg); err != nil {
			return nil, fmt.Errorf("configuring partition snapshots: %w", err)
		}
		hooks = append(hooks, n.snaps)
	}
	var err error
	if n.routing, err = newQueryRouting(n.buf, n.api, n.cfg.Cluster.NodeName, n.cfg.Serve.Router(), n.child("query"), n.reg); err != nil {
		return nil, err
	}
	if brokenKeepAnswering {
		return append(hooks, keepAnswering{n.routing.Responder}), nil
	}
	return append(hooks, n.routing.Responder), nil
}

// keepAnswering is the responder of the clickpipe_broken_keep_answering
// negative control: a lost lease does not stop the answers (nor does the
// lease's validity, which this build does not give the responder).
type keepAnswering struct{ *serve.Responder }

func (k keepAnswering) Released(ctx context.Context, p int, graceful bool) {
	if graceful {
		k.Responder.Released(ctx, p, graceful)
	}
}

// snapshotComponents stop after the leases were released (each graceful
// release writes a final snapshot).
func (n *node) snapshotComponents() []component {
	if n.snaps == nil {
		return nil
	}
	return []component{{name: "snapshot", run: n.snaps.Run, stop: n.snaps.Shutdown}}
}

// routingComponents are listed after the query listener, so the epoch
// watch stops after it.
func (n *node) routingComponents() []component {
	if n.routing == nil {
		return nil
	}
	return []component{{name: "query-routing", run: n.routing.Epochs.Run, stop: n.routing.Epochs.Shutdown}}
}

// queryAPI is the query API as the listener mounts it: under partition
// ownership the router, which sends each query to the partition's owner.
func (n *node) queryAPI() http.Handler {
	if n.routing != nil {
		return n.routing.Router
	}
	return n.api
}
