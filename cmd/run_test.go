package cmd

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clickpipe/clickpipe/config"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testConfig is the default configuration on temp dirs and free ports.
func testConfig(t *testing.T) *config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Ingest.Listen = "127.0.0.1:0"
	cfg.Query.Listen = "127.0.0.1:0"
	cfg.Disk.MinFreePercent, cfg.Disk.MinFreeBytes = 0, 1<<20
	cfg.Buffer.Partitions = 4
	cfg.Buffer.MaxBytes = 256 << 20
	cfg.ShutdownTimeout = 10 * time.Second
	cfg.Resolve()
	return &cfg
}

// The real run function leaves no goroutine behind after a drain.
func TestRunServeNoGoroutineLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, cfg, &stdout, &stderr) }()
	clickpipetest.Eventually(t, 30*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("runServe returned before ready: %v\n%s", err, stderr.String())
		default:
		}
		return strings.Contains(stderr.String(), "msg=ready")
	}, "ready")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("runServe did not return")
	}
	require.Contains(t, stderr.String(), "shutdown complete")
}

// A stage that fails drains the others and makes serve return an error.
func TestLifecycleFailedComponentDrainsRest(t *testing.T) {
	var mu sync.Mutex
	var stopped []string
	stop := func(name string) func(context.Context) error {
		return func(context.Context) error { mu.Lock(); stopped = append(stopped, name); mu.Unlock(); return nil }
	}
	block := make(chan struct{})
	lc := &lifecycle{log: newLogger(&bytes.Buffer{}, "text", "error"), budget: 5 * time.Second, comps: []component{
		{name: "a", run: func(context.Context) error { <-block; return nil }, stop: func(ctx context.Context) error { close(block); return stop("a")(ctx) }},
		{name: "b", run: func(context.Context) error { return context.DeadlineExceeded }, stop: stop("b")},
		{name: "c", stop: stop("c")},
	}}
	err := lc.run(context.Background())
	require.ErrorContains(t, err, "b stopped unexpectedly")
	require.Equal(t, []string{"a", "b", "c"}, stopped)
}

// A component that ignores its stop is cancelled hard, then abandoned
// with errHardStop once the budget is spent.
func TestLifecycleBudgetOverrun(t *testing.T) {
	var dump bytes.Buffer
	stuck := make(chan struct{})
	defer close(stuck)
	lc := &lifecycle{log: newLogger(&bytes.Buffer{}, "text", "error"), budget: 400 * time.Millisecond, dump: &dump, comps: []component{
		{name: "stuck", run: func(context.Context) error { <-stuck; return nil }},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t0 := time.Now()
	err := lc.run(ctx)
	require.ErrorIs(t, err, errHardStop)
	require.Less(t, time.Since(t0), 2*time.Second)
	require.Contains(t, dump.String(), "goroutine")
}
