package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/config"
	"github.com/clickpipe/clickpipe/internal/datadir"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/state"
)

// `clickpipe rebuild` re-derives the whole serving state from the EVENTS
// stream (what it retains: buffer.max_age, 7 days by default) with the
// sessionizer of this binary, into <data_dir>/state.rebuild, and swaps it
// in. It is offline: it takes the data-dir lock, so serve must be stopped.

func newRebuildCmd(g *globalFlags) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "rebuild",
		Short: "Re-derive the serving state from the buffered event stream and swap it in (offline: stop serve first)",
		Long: `rebuild replays the EVENTS stream (what it retains) through this binary's sessionizer into
<data_dir>/state.rebuild and swaps it in for the serving state. It takes the data-dir lock:
stop serve first, and use the same configuration.

Example:
  clickpipe rebuild --config config.yaml`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path, g)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			return runRebuild(c.Context(), cfg, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	c.Flags().StringVar(&path, "config", "", "configuration file (YAML); embedded defaults without one")
	return c
}

const progressEvery = time.Second

// rebuilder is one run of `clickpipe rebuild`.
type rebuilder struct {
	cfg    *config.Config
	log    *slog.Logger
	stderr io.Writer
	buf    *buffer.Buffer
	cons   *trackedConsumers
}

func runRebuild(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer) error {
	dir, err := datadir.Open(cfg.DataDir)
	if errors.Is(err, datadir.ErrLocked) {
		return fmt.Errorf("rebuild is offline and needs the data dir to itself: stop clickpipe serve first: %w", err)
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	r := &rebuilder{cfg: cfg, stderr: stderr, log: newLogger(stderr, cfg.Log.Format, cfg.Log.Level)}
	start := time.Now()
	res, err := r.run(ctx)
	if err != nil {
		return err
	}
	if !dir.Unclean() { // keep the marker of an earlier crash for the next serve to report
		if err := dir.MarkClean(); err != nil {
			r.log.Warn("could not clear the running marker", "err", err)
		}
	}
	_, err = fmt.Fprintf(stdout, "rebuilt the serving state from %d messages (stream sequences %d..%d) in %s\n"+
		"now serving from %s; the previous state was moved to %s (delete it when satisfied)\n",
		res.messages, res.firstSeq, res.lastSeq, time.Since(start).Round(time.Millisecond), res.live, res.old)
	return err
}

type rebuildResult struct {
	messages          uint64
	firstSeq, lastSeq uint64
	live, old         string
}

func (r *rebuilder) run(ctx context.Context) (rebuildResult, error) {
	var res rebuildResult
	var err error
	if r.buf, err = buffer.New(r.cfg.Buffer, buffer.StoreDir(r.cfg.DataDir), r.log.With("component", "buffer"), nil); err != nil {
		return res, fmt.Errorf("configuring buffer: %w", err)
	}
	if err := r.buf.Open(ctx); err != nil {
		return res, fmt.Errorf("starting buffer: %w", err)
	}
	defer r.buf.Close()
	st, err := r.buf.State(ctx, buffer.EventsStream)
	if err != nil {
		return res, fmt.Errorf("reading the events stream: %w", err)
	}
	res.messages, res.firstSeq, res.lastSeq = st.Messages, st.FirstSeq, st.LastSeq
	targets, err := r.partitionTargets(ctx)
	if err != nil {
		return res, err
	}
	fresh := filepath.Join(r.cfg.DataDir, "state.rebuild")
	if err := os.RemoveAll(fresh); err != nil { // left by an interrupted rebuild
		return res, fmt.Errorf("removing %s: %w", fresh, err)
	}
	if err := r.derive(ctx, fresh, targets, st.Messages); err != nil {
		_ = os.RemoveAll(fresh)
		return res, fmt.Errorf("rebuild abandoned, serving state unchanged: %w", err)
	}
	res.live = filepath.Join(r.cfg.DataDir, "state")
	res.old = filepath.Join(r.cfg.DataDir, "state.old-"+time.Now().UTC().Format("20060102T150405Z"))
	if err := swapDirs(res.live, fresh, res.old); err != nil {
		return res, fmt.Errorf("swapping in the rebuilt state (left at %s): %w", fresh, err)
	}
	return res, nil
}

// partitionTargets is the last stream sequence of every partition subject
// (0 for an empty partition): the checkpoint each must reach.
func (r *rebuilder) partitionTargets(ctx context.Context) ([]uint64, error) {
	s, err := r.buf.JetStream().Stream(ctx, buffer.EventsStream)
	if err != nil {
		return nil, fmt.Errorf("opening the events stream: %w", err)
	}
	out := make([]uint64, r.cfg.Buffer.Partitions)
	for p := range out {
		m, err := s.GetLastMsgForSubject(ctx, buffer.Subject(p))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return nil, fmt.Errorf("last message of partition %d: %w", p, err)
		default:
			out[p] = m.Sequence
		}
	}
	return out, nil
}

// derive runs the real sessionizer over the stream into a fresh store in
// dir until every partition's checkpoint reaches its target.
func (r *rebuilder) derive(ctx context.Context, dir string, targets []uint64, total uint64) error {
	store, err := state.Open(r.cfg.Serve.StoreOptions(), dir, r.log.With("component", "state"), nil)
	if err != nil {
		return fmt.Errorf("opening fresh state: %w", err)
	}
	defer store.Close()
	// Erased users' events are skipped (docs/privacy.md): a rebuild never
	// brings a deleted user back.
	regs, err := openRegulations(ctx, r.cfg, r.buf, nil, nil, r.log.With("component", "regulation"), nil)
	if err != nil {
		return err
	}
	defer regs.Close()
	r.cons = &trackedConsumers{eventsConsumers: eventsConsumers{buf: r.buf, prefix: processConsumerPrefix(r.cfg), ackWait: r.cfg.Process.AckWait}, live: map[int]pender{}}
	proc, err := process.New(processConfig(r.cfg), process.Deps{Store: store, Consumers: r.cons, Sessions: r.buf,
		Controls: r.buf, Partitions: r.cfg.Buffer.Partitions, Erasures: regs, Forgets: regs},
		r.log.With("component", "process"), prometheus.NewRegistry())
	if err != nil {
		return fmt.Errorf("configuring sessionizer: %w", err)
	}
	hard, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- proc.Run(hard) }()
	if err := r.wait(ctx, store, proc, runErr, targets, total); err != nil {
		cancel()
		<-runErr
		return err
	}
	sctx, scancel := context.WithTimeout(ctx, r.cfg.ShutdownTimeout)
	defer scancel()
	if err := proc.Shutdown(sctx); err != nil {
		cancel()
		<-runErr
		return err
	}
	if err := <-runErr; err != nil {
		return err
	}
	return store.Close()
}

// wait reports progress every second until the store has caught up.
func (r *rebuilder) wait(ctx context.Context, store *state.Store, proc *process.Processor, runErr chan error,
	targets []uint64, total uint64) error {
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		done, err := caughtUp(store, targets)
		if err != nil {
			return err
		}
		if done {
			fmt.Fprintf(r.stderr, "rebuild: %d/%d messages\n", total, total)
			return nil
		}
		if err := proc.Healthy(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted: %w", ctx.Err())
		case err := <-runErr:
			runErr <- err
			return fmt.Errorf("sessionizer stopped before catching up: %w", err)
		case <-t.C:
			fmt.Fprintf(r.stderr, "rebuild: %d/%d messages\n", total-r.cons.remaining(ctx, total), total)
		}
	}
}

func caughtUp(store *state.Store, targets []uint64) (bool, error) {
	done := true
	err := store.View(func(txn *badger.Txn) error {
		for p, target := range targets {
			cp, err := state.ReadCheckpoint(txn, p)
			if err != nil {
				return err
			}
			done = done && cp.LastSeq >= target
		}
		return nil
	})
	return done, err
}

// pender is what progress needs of a partition consumer.
type pender interface {
	Pending(ctx context.Context) (pending, ackPending uint64, err error)
}

// trackedConsumers is eventsConsumers that remembers the live consumer of
// each partition, for the progress line.
type trackedConsumers struct {
	eventsConsumers
	mu   sync.Mutex
	live map[int]pender
}

func (c *trackedConsumers) PartitionConsumer(ctx context.Context, p int, startSeq uint64) (process.Fetcher, error) {
	f, err := c.eventsConsumers.PartitionConsumer(ctx, p, startSeq)
	if pd, ok := f.(pender); ok && err == nil {
		c.mu.Lock()
		c.live[p] = pd
		c.mu.Unlock()
	}
	return f, err
}

// remaining is an estimate for display: messages not yet delivered or
// acknowledged by the open consumers (all of them before the first opens).
func (c *trackedConsumers) remaining(ctx context.Context, total uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.live) == 0 {
		return total
	}
	var n uint64
	for _, pd := range c.live {
		if pending, ack, err := pd.Pending(ctx); err == nil {
			n += pending + ack
		}
	}
	return min(n, total)
}

// swapDirs puts fresh in place of live and moves live to old: one atomic
// exchange where the kernel supports it (a crash leaves either the old or
// the new state at live, never neither), two renames otherwise.
func swapDirs(live, fresh, old string) error {
	if _, err := os.Stat(live); errors.Is(err, os.ErrNotExist) {
		return syncRename(fresh, live)
	}
	err := unix.Renameat2(unix.AT_FDCWD, live, unix.AT_FDCWD, fresh, unix.RENAME_EXCHANGE)
	if err == nil {
		return syncRename(fresh, old) // fresh now holds the previous state
	}
	if err := os.Rename(live, old); err != nil {
		return err
	}
	if err := syncRename(fresh, live); err != nil {
		_ = os.Rename(old, live)
		return err
	}
	return nil
}

// syncRename renames and fsyncs the parent directory.
func syncRename(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(to))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
