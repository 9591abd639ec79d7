package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/pprof"
	"time"
)

// component is one stage of the running process. Components are listed in
// stop order (ingest first, NATS last) and started in reverse.
type component struct {
	name string
	// run does the work until drained or until hard is cancelled; nil for
	// components that only hold a resource.
	run func(hard context.Context) error
	// stop begins a graceful drain; run must return soon after. For a
	// resource it closes it.
	stop func(ctx context.Context) error
}

// lifecycle runs components and drains them in order within a budget.
type lifecycle struct {
	log    *slog.Logger
	budget time.Duration
	dump   io.Writer
	comps  []component
	// onDrain runs first when draining begins (readiness false).
	onDrain func()
}

type runResult struct {
	name string
	err  error
}

// errHardStop reports a drain that overran its budget.
var errHardStop = errors.New("shutdown budget exceeded")

// run starts every component, waits for ctx to end or a component to fail,
// then drains. It returns the first component failure, or errHardStop
// (wrapped) when the budget ran out.
func (l *lifecycle) run(ctx context.Context) error {
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	done := make(map[string]chan error, len(l.comps))
	failed := make(chan runResult, len(l.comps))
	for i := len(l.comps) - 1; i >= 0; i-- {
		c := l.comps[i]
		if c.run == nil {
			continue
		}
		ch := make(chan error, 1)
		done[c.name] = ch
		go func() {
			err := c.run(hard)
			ch <- err
			failed <- runResult{c.name, err}
		}()
	}
	var cause error
	select {
	case <-ctx.Done():
		l.log.Info("shutting down", "reason", context.Cause(ctx))
	case r := <-failed:
		cause = fmt.Errorf("%s stopped unexpectedly: %w", r.name, r.err)
		if r.err == nil {
			cause = fmt.Errorf("%s stopped unexpectedly", r.name)
		}
		l.log.Error("component failed, draining the rest", "component", r.name, "err", r.err)
		// Put it back so drain sees it returned.
		done[r.name] = closedWith(r.err)
	}
	if err := l.drain(done, cancelHard); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

func closedWith(err error) chan error {
	ch := make(chan error, 1)
	ch <- err
	return ch
}

// drain stops components in order: three quarters of the budget for the
// graceful part, then hard cancellation, then a goroutine dump.
func (l *lifecycle) drain(done map[string]chan error, cancelHard context.CancelFunc) error {
	start := time.Now()
	graceful := start.Add(l.budget * 3 / 4)
	deadline := start.Add(l.budget)
	if l.onDrain != nil {
		l.onDrain()
	}
	var errs []error
	overran := false
	for _, c := range l.comps {
		t0 := time.Now()
		stopAt := graceful
		if overran {
			stopAt = deadline
		}
		ctx, cancel := context.WithDeadline(context.Background(), stopAt)
		if c.stop != nil {
			if err := c.stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				errs = append(errs, fmt.Errorf("stopping %s: %w", c.name, err))
			}
		}
		if ch, ok := done[c.name]; ok {
			select {
			case err := <-ch:
				if err != nil && !errors.Is(err, context.Canceled) {
					errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
				}
			case <-ctx.Done():
				if !overran {
					overran = true
					l.log.Warn("graceful drain budget spent, cancelling in-flight work", "component", c.name)
					cancelHard()
				}
				hctx, hcancel := context.WithDeadline(context.Background(), deadline)
				select {
				case <-ch:
				case <-hctx.Done():
					hcancel()
					cancel()
					l.log.Error("shutdown budget exceeded, dumping goroutines", "component", c.name, "budget", l.budget)
					if l.dump != nil {
						_ = pprof.Lookup("goroutine").WriteTo(l.dump, 2)
					}
					return fmt.Errorf("%w (%s) while stopping %s", errHardStop, l.budget, c.name)
				}
				hcancel()
			}
		}
		cancel()
		l.log.Info("stopped", "component", c.name, "duration", time.Since(t0).Round(time.Microsecond))
	}
	l.log.Info("shutdown complete", "duration", time.Since(start).Round(time.Millisecond))
	return errors.Join(errs...)
}
