package cmd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/config"
	"github.com/clickpipe/clickpipe/ingest"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/regulation"
	"github.com/clickpipe/clickpipe/state"
)

var (
	_ ingest.Suppressor      = (*regulation.Registry)(nil)
	_ process.Erasures       = (*regulation.Registry)(nil)
	_ process.ForgetReporter = (*regulation.Registry)(nil)
	_ regulation.Publisher   = (*buffer.Buffer)(nil)
	_ archive.Erasures       = lakeErasures{}
)

// lakeErasures is the registry as the archive sees it: a table is the
// store "lake/<table>".
type lakeErasures struct{ r *regulation.Registry }

func (l lakeErasures) ErasedEvent(id string, received time.Time) bool {
	return l.r.ErasedEvent(id, received)
}

func (l lakeErasures) PendingErasures(table string) []archive.Erasure {
	regs := l.r.Pending("lake/" + table)
	out := make([]archive.Erasure, len(regs))
	for i, reg := range regs {
		out[i] = archive.Erasure{ID: reg.ID, UserIDs: reg.UserIDs, Created: reg.Created}
	}
	return out
}

func (l lakeErasures) Erased(ctx context.Context, id, table string, found, removed int64) error {
	return l.r.Progress(ctx, id, "lake/"+table, regulation.StoreProgress{Status: regulation.StatusDone,
		Found: found, Removed: removed, Updated: time.Now().UTC()})
}

// stateLinker finds ids linked by identity stitching in the serving state.
type stateLinker struct {
	st         *state.Store
	partitions int
}

func (l stateLinker) Linked(ids []string) ([]string, error) { return l.st.Linked(l.partitions, ids) }

// openRegulations opens the regulation registry over the buffer's
// buckets. st may be nil (no linked-id lookup) and pub nil (no forget
// messages: rebuild).
func openRegulations(ctx context.Context, cfg *config.Config, buf *buffer.Buffer, st *state.Store,
	pub regulation.Publisher, log *slog.Logger, reg prometheus.Registerer) (*regulation.Registry, error) {
	within := startupRetryFor(cfg)
	var regs, users jetstream.KeyValue
	err := retryStartup(ctx, log, "opening the regulation buckets", within, func() (err error) {
		if regs, err = buf.KeyValue(ctx, buffer.RegulationsBucket); err != nil {
			return err
		}
		users, err = buf.KeyValue(ctx, buffer.RegulatedUsersBucket)
		return err
	})
	if err != nil {
		return nil, err
	}
	deps := regulation.Deps{Regulations: regs, Users: users, Publisher: pub, Partitions: cfg.Buffer.Partitions,
		ForgetOnRestart: forgetSuppressionOnRestart}
	if !cfg.Archive.Enabled {
		deps.Stores = []string{regulation.StoreState} // no lake to clear
	}
	if st != nil {
		deps.Linker = stateLinker{st: st, partitions: cfg.Buffer.Partitions}
	}
	r, err := regulation.New(cfg.Regulation, deps, log, reg)
	if err != nil {
		return nil, fmt.Errorf("configuring regulations: %w", err)
	}
	// Open is idempotent (revision-guarded), so a failed attempt is
	// simply made again.
	if err := retryStartup(ctx, log, "loading regulations", within, func() error { return r.Open(ctx) }); err != nil {
		return nil, fmt.Errorf("opening regulations: %w", err)
	}
	return r, nil
}

// startupRetryFor is how long start-up retries a JetStream request that
// failed: while a cluster forms its groups elect leaders and requests time
// out (a node of the rolling-restart test exited on "loading REGULATIONS:
// context deadline exceeded" seconds after its peers formed the cluster),
// so as long as the cluster may take to form; on one node, briefly.
func startupRetryFor(cfg *config.Config) time.Duration {
	if cfg.Buffer.Cluster.Enabled {
		return cfg.Buffer.Cluster.JoinTimeout
	}
	return 15 * time.Second
}

// retryStartup runs f until it succeeds, ctx ends or within has passed,
// logging each failed attempt; it returns f's last error.
func retryStartup(ctx context.Context, log *slog.Logger, what string, within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || ctx.Err() != nil || !time.Now().Before(deadline) {
			return err
		}
		log.Warn(what+"; retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}
