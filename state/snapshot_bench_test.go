package state_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

const benchUsers = 10_000

// BenchmarkExport exports one partition of 10k users (statetest.Fill: 31
// keys a user) from a real Badger on disk to memory. One op is one
// snapshot; bytes/op is the snapshot's size.
func BenchmarkExport(b *testing.B) {
	st := statetest.New(b, state.DefaultOptions(), "")
	statetest.Fill(b, st, 1, benchUsers, 1_000_000, "bench")
	statetest.Fill(b, st, 2, 1000, 10, "other")
	var buf bytes.Buffer
	_, err := st.Export(1, 1, &buf)
	require.NoError(b, err)
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if _, err := st.Export(1, 1, &buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len())/benchUsers, "snapshot-B/user")
}

// BenchmarkImport replaces a partition of 10k users by a snapshot of 10k
// others (verify, mark, delete, load, commit), in a real Badger on disk
// with SyncWrites. One op is one import.
func BenchmarkImport(b *testing.B) {
	src := statetest.New(b, state.DefaultOptions(), "")
	statetest.Fill(b, src, 1, benchUsers, 1_000_000, "src")
	var buf bytes.Buffer
	_, err := src.Export(1, 1, &buf)
	require.NoError(b, err)
	require.NoError(b, src.Close())
	snap := buf.Bytes()

	dst := statetest.New(b, state.DefaultOptions(), "")
	statetest.Fill(b, dst, 1, benchUsers, 500_000, "dst")
	b.SetBytes(int64(len(snap)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dst.Import(1, bytes.NewReader(snap), int64(len(snap))); err != nil {
			b.Fatal(err)
		}
	}
}
