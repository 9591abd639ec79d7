// Package gate decides whether ingest may accept new events right now. It
// combines cheap cached conditions (disk watermark, stream fullness,
// consumer lag) refreshed in the background, so the per-request check is a
// mutex read.
package gate

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Condition is one reason to refuse intake; it returns non-nil while
// intake must stop.
type Condition struct {
	Name  string
	Check func(ctx context.Context) error
}

// Gate caches the combined verdict of its conditions.
type Gate struct {
	conds    []Condition
	interval time.Duration

	mu  sync.Mutex
	err error
}

// New returns a gate over conds, refreshed every interval by Run.
func New(interval time.Duration, conds ...Condition) *Gate {
	return &Gate{conds: conds, interval: interval}
}

// Admit returns nil when intake is allowed, else the reasons.
func (g *Gate) Admit() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Refresh evaluates every condition now.
func (g *Gate) Refresh(ctx context.Context) error {
	var errs []error
	for _, c := range g.conds {
		if err := c.Check(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	g.mu.Lock()
	g.err = err
	g.mu.Unlock()
	return err
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
