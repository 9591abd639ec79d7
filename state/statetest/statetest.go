// Package statetest opens a real Badger serving-state store on a test's
// temporary directory, like buffer/buffertest does for the buffer.
package statetest

import (
	"io"
	"log/slog"
	"testing"

	"github.com/clickpipe/clickpipe/state"
)

// Options are the default store options with the smallest memtable Badger
// accepts, so many stores fit in one test process.
func Options() state.Options {
	o := state.DefaultOptions()
	o.MemTableBytes = 8 << 20
	o.BlockCacheBytes = 8 << 20
	return o
}

// New opens a store with opts in dir (t.TempDir() when dir is empty) and
// closes it when the test ends.
func New(t testing.TB, opts state.Options, dir string) *state.Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := state.Open(opts, dir, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatalf("statetest: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}
