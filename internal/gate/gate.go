// Package gate decides whether ingest may accept new events right now. It
// combines cheap cached conditions (disk watermark, stream fullness,
// consumer lag) refreshed in the background, so the per-request check is a
// mutex read. It logs when intake closes and reopens, with the reasons.
package gate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Condition is one reason to refuse intake; it returns non-nil while
// intake must stop. An Advisory condition is reported (Warnings, logs)
// but never refuses intake.
type Condition struct {
	Name     string
	Check    func(ctx context.Context) error
	Advisory bool
}

// Gate caches the combined verdict of its conditions.
type Gate struct {
	conds    []Condition
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	err     error
	warn    error
	closed  []string // names of the blocking conditions failing now
	warned  []string // names of the advisory conditions failing now
	closeAt time.Time
}

// New returns a gate over conds, refreshed every interval by Run; log may
// be nil (no logging).
func New(interval time.Duration, log *slog.Logger, conds ...Condition) *Gate {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Gate{conds: conds, interval: interval, log: log, now: time.Now}
}

// Admit returns nil when intake is allowed, else the reasons.
func (g *Gate) Admit() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Warnings returns the failing advisory conditions, nil when none.
func (g *Gate) Warnings() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.warn
}

// Refresh evaluates every condition now and returns the blocking verdict.
func (g *Gate) Refresh(ctx context.Context) error {
	var errs, warns []error
	var closed, warned []string
	for _, c := range g.conds {
		err := c.Check(ctx)
		switch {
		case err == nil:
		case c.Advisory:
			warns, warned = append(warns, err), append(warned, c.Name)
		default:
			errs, closed = append(errs, err), append(closed, c.Name)
		}
	}
	err, warn := errors.Join(errs...), errors.Join(warns...)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.logTransitions(closed, warned, err, warn)
	g.err, g.warn, g.closed, g.warned = err, warn, closed, warned
	return err
}

// logTransitions logs changes of the failing conditions; mu is held.
func (g *Gate) logTransitions(closed, warned []string, err, warn error) {
	switch {
	case len(g.closed) == 0 && len(closed) > 0:
		g.closeAt = g.now()
		g.log.Warn("intake gate closed: ingest answers 503 + Retry-After", "conditions", closed, "reason", err.Error())
	case len(g.closed) > 0 && len(closed) == 0:
		g.log.Info("intake gate reopened", "was", g.closed, "closed_for", g.now().Sub(g.closeAt).Round(time.Millisecond).String())
	case !slices.Equal(g.closed, closed):
		g.log.Warn("intake gate still closed, for other reasons", "conditions", closed, "reason", err.Error())
	}
	switch {
	case !slices.Equal(g.warned, warned) && len(warned) > 0:
		g.log.Warn("intake gate warning (intake continues)", "conditions", warned, "reason", warn.Error())
	case len(g.warned) > 0 && len(warned) == 0:
		g.log.Info("intake gate warning cleared", "was", g.warned)
	}
}

// Run refreshes until ctx ends.
func (g *Gate) Run(ctx context.Context) error {
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		_ = g.Refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
