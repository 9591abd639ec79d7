// Package servetest opens a real Badger serving-state store on a test's
// temporary directory, like buffer/buffertest does for the buffer.
package servetest

import (
	"io"
	"log/slog"
	"testing"

	"github.com/clickpipe/clickpipe/serve"
)

// Config is the default serving-state configuration with the smallest
// memtable Badger accepts, so many stores fit in one test process.
func Config() serve.Config {
	cfg := serve.DefaultConfig()
	cfg.MemTableBytes = 8 << 20
	cfg.BlockCacheBytes = 8 << 20
	return cfg
}

// New opens a store with cfg in dir (t.TempDir() when dir is empty) and
// closes it when the test ends.
func New(t testing.TB, cfg serve.Config, dir string) *serve.Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := serve.Open(cfg, dir, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatalf("servetest: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}
