// Package buffertest starts a real embedded JetStream buffer on a test's
// temporary directory, like net/http/httptest does for servers.
package buffertest

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/clickpipe/clickpipe/buffer"
)

// Config is the default buffer configuration shrunk for tests: 4
// partitions, 256 MiB, fsync.
func Config() buffer.Config {
	cfg := buffer.DefaultConfig()
	cfg.Partitions = 4
	cfg.MaxBytes = 256 << 20
	cfg.FailedMaxBytes = 16 << 20
	return cfg
}

// New opens a buffer with cfg in dir (t.TempDir() when dir is empty) and
// closes it when the test ends.
func New(t testing.TB, cfg buffer.Config, dir string) *buffer.Buffer {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	b, err := buffer.New(cfg, dir, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatalf("buffertest: %v", err)
	}
	if err := b.Open(context.Background()); err != nil {
		t.Fatalf("buffertest: opening: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}
