package state_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

func dumpAll(t *testing.T, st *state.Store, parts int) []map[string]statetest.Stored {
	out := make([]map[string]statetest.Stored, parts)
	for p := range out {
		out[p] = statetest.Dump(t, st, p)
	}
	return out
}

// filled is a store with partitions 0-3 of users users each.
func filled(t testing.TB, users int, tag string) *state.Store {
	st := statetest.New(t, statetest.Options(), "")
	for p := range 4 {
		statetest.Fill(t, st, p, users, uint64(1000*(p+1)), tag)
	}
	return st
}

func export(t *testing.T, st *state.Store, p int) ([]byte, state.SnapshotInfo) {
	t.Helper()
	var buf bytes.Buffer
	info, err := st.Export(p, 7, &buf)
	require.NoError(t, err)
	return buf.Bytes(), info
}

func TestSnapshotRoundTrip(t *testing.T) {
	src, dst := filled(t, 60, "src"), filled(t, 40, "dst")
	snap, info := export(t, src, 1)
	require.Equal(t, state.SnapshotInfo{Partition: 1, Epoch: 7, CreatedAt: info.CreatedAt,
		Checkpoint: state.Checkpoint{LastSeq: 2000, MaxEventTime: 1_764_000_000_000}, Keys: info.Keys}, info)
	want := statetest.Dump(t, src, 1)
	require.Equal(t, int64(len(want)-1), info.Keys, "every key but the checkpoint")

	before := dumpAll(t, dst, 4)
	got, err := dst.Import(1, bytes.NewReader(snap), int64(len(snap)))
	require.NoError(t, err)
	require.Equal(t, info, got)

	require.Empty(t, cmp.Diff(want, statetest.Dump(t, dst, 1)), "partition 1 is the source's, TTLs included")
	for _, p := range []int{0, 2, 3} {
		require.Empty(t, cmp.Diff(before[p], statetest.Dump(t, dst, p)), "partition %d untouched", p)
	}
	cp, err := dst.Position(1)
	require.NoError(t, err)
	require.Equal(t, uint64(2000), cp.LastSeq)

	again, _ := export(t, dst, 1) // what was imported exports the same keys
	_, err = src.Import(1, bytes.NewReader(again), int64(len(again)))
	require.NoError(t, err)
	require.Empty(t, cmp.Diff(want, statetest.Dump(t, src, 1)))
}

func TestSnapshotOfEmptyPartition(t *testing.T) {
	src, dst := statetest.New(t, statetest.Options(), ""), filled(t, 20, "dst")
	snap, info := export(t, src, 2)
	require.Equal(t, state.Checkpoint{}, info.Checkpoint)
	_, err := dst.Import(2, bytes.NewReader(snap), int64(len(snap)))
	require.NoError(t, err)
	require.Empty(t, statetest.Dump(t, dst, 2))
	require.NotEmpty(t, statetest.Dump(t, dst, 3))
}

// corruptions of a valid snapshot; each must be refused untouched.
func corruptions(snap []byte) map[string][]byte {
	flip := func(i int) []byte {
		b := bytes.Clone(snap)
		b[i] ^= 0x40
		return b
	}
	out := map[string][]byte{
		"empty":              nil,
		"magic only":         snap[:6],
		"header only":        snap[:40],
		"half":               snap[:len(snap)/2],
		"no checksum":        snap[:len(snap)-4],
		"one byte short":     snap[:len(snap)-1],
		"trailing byte":      append(bytes.Clone(snap), 0),
		"flipped in a value": flip(len(snap) / 2),
		"flipped checksum":   flip(len(snap) - 1),
		"version 2":          flip(7),
		"not a snapshot":     flip(0),
	}
	return out
}

func TestCorruptSnapshotIsRefusedUntouched(t *testing.T) {
	src, dst := filled(t, 40, "src"), filled(t, 30, "dst")
	snap, _ := export(t, src, 1)
	other, _ := export(t, src, 2)
	cases := corruptions(snap)
	cases["another partition"] = other
	before := dumpAll(t, dst, 4)
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := dst.Import(1, bytes.NewReader(b), int64(len(b)))
			require.ErrorIs(t, err, state.ErrBadSnapshot)
			t.Log(err)
			require.Empty(t, cmp.Diff(before, dumpAll(t, dst, 4)))
			_, err = dst.Position(1)
			require.NoError(t, err)
		})
	}
}

// failingReader serves data, but the second pass over it (Import's load)
// fails once it reaches failAt: a read error in the middle of the load.
type failingReader struct {
	data   []byte
	failAt int64
	passes int
}

var errInjected = errors.New("injected read error")

func (r *failingReader) ReadAt(b []byte, off int64) (int, error) {
	if off == 0 {
		r.passes++
	}
	if r.passes >= 2 && off+int64(len(b)) > r.failAt {
		return 0, errInjected
	}
	return bytes.NewReader(r.data).ReadAt(b, off)
}

func TestInterruptedImportIsPendingNotValid(t *testing.T) {
	src := statetest.New(t, statetest.Options(), "")
	statetest.Fill(t, src, 1, 800, 2000, "src") // several write batches: the failure comes after some commit
	dir := t.TempDir()
	dst := statetest.New(t, statetest.Options(), dir)
	for p := range 4 {
		statetest.Fill(t, dst, p, 30, 500, "dst")
	}
	snap, _ := export(t, src, 1)
	before := dumpAll(t, dst, 4)

	_, err := dst.Import(1, &failingReader{data: snap, failAt: int64(len(snap)) * 2 / 3}, int64(len(snap)))
	require.ErrorIs(t, err, errInjected)
	require.NotErrorIs(t, err, state.ErrBadSnapshot)
	checkPending(t, dst)
	loaded := len(statetest.Dump(t, dst, 1))
	require.Greater(t, loaded, 0, "part of the snapshot is loaded")
	require.Less(t, loaded, len(statetest.Dump(t, src, 1)))

	// the mark is durable: a restart (or a crash) finds it
	require.NoError(t, dst.Close())
	dst = statetest.New(t, statetest.Options(), dir)
	checkPending(t, dst)
	for _, p := range []int{0, 2, 3} {
		require.Empty(t, cmp.Diff(before[p], statetest.Dump(t, dst, p)), "partition %d untouched", p)
	}

	_, err = dst.Import(1, bytes.NewReader(snap), int64(len(snap)))
	require.NoError(t, err)
	require.Empty(t, cmp.Diff(statetest.Dump(t, src, 1), statetest.Dump(t, dst, 1)))
	cp, err := dst.Position(1)
	require.NoError(t, err)
	require.Equal(t, uint64(2000), cp.LastSeq)
}

func checkPending(t *testing.T, st *state.Store) {
	t.Helper()
	_, err := st.Position(1)
	require.ErrorIs(t, err, state.ErrRestorePending)
	_, err = st.Export(1, 0, io.Discard)
	require.ErrorIs(t, err, state.ErrRestorePending)
	_, found := statetest.Dump(t, st, 1)[string(state.CheckpointKey(1))]
	require.False(t, found, "a pending partition has no checkpoint")
}

func TestDropEmptiesOnePartition(t *testing.T) {
	st := filled(t, 30, "x")
	before := dumpAll(t, st, 4)
	require.NoError(t, st.Drop(2))
	require.Empty(t, statetest.Dump(t, st, 2))
	cp, err := st.Position(2)
	require.NoError(t, err)
	require.Zero(t, cp)
	for _, p := range []int{0, 1, 3} {
		require.Empty(t, cmp.Diff(before[p], statetest.Dump(t, st, p)))
	}
}

func TestExportWriterErrorIsReturned(t *testing.T) {
	st := filled(t, 50, "x")
	_, err := st.Export(0, 0, failingWriter{})
	require.ErrorIs(t, err, errInjected)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errInjected }

// TestExportIsConsistentWithItsCheckpoint exports while a writer commits
// a counter and the checkpoint in one transaction each time: the counter
// inside every snapshot equals its checkpoint.
func TestExportIsConsistentWithItsCheckpoint(t *testing.T) {
	st := filled(t, 100, "x")
	counter := state.TitleKey(0, "counter")
	commit := func(seq uint64) error {
		return st.Update(func(txn *badger.Txn) error {
			return errors.Join(txn.Set(counter, fmt.Appendf(nil, "%d", seq)),
				txn.Set(state.CheckpointKey(0), state.EncodeCheckpoint(&state.Checkpoint{LastSeq: seq})))
		})
	}
	require.NoError(t, commit(1))
	stop, errc := make(chan struct{}), make(chan error, 1)
	go func() {
		for seq := uint64(2); ; seq++ {
			select {
			case <-stop:
				errc <- nil
				return
			default:
			}
			if err := commit(seq); err != nil {
				errc <- err
				return
			}
		}
	}()
	for range 5 {
		snap, info := export(t, st, 0)
		into := statetest.New(t, statetest.Options(), "")
		_, err := into.Import(0, bytes.NewReader(snap), int64(len(snap)))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint(info.Checkpoint.LastSeq), statetest.Dump(t, into, 0)[string(counter)].Value)
		t.Log("snapshot at", info.Checkpoint.LastSeq)
	}
	close(stop)
	require.NoError(t, <-errc)
}

// FuzzImport feeds Import arbitrary bytes: it refuses them or loads them,
// never panics, and a refused input leaves the partition as it was.
func FuzzImport(f *testing.F) {
	src := statetest.New(f, statetest.Options(), "")
	statetest.Fill(f, src, 1, 3, 10, "seed")
	var buf bytes.Buffer
	_, err := src.Export(1, 1, &buf)
	require.NoError(f, err)
	f.Add(buf.Bytes())
	for _, b := range corruptions(buf.Bytes()) {
		f.Add(b)
	}
	dst := statetest.New(f, statetest.Options(), "")
	f.Fuzz(func(t *testing.T, b []byte) {
		before := statetest.Dump(t, dst, 1)
		if _, err := dst.Import(1, bytes.NewReader(b), int64(len(b))); err != nil {
			require.ErrorIs(t, err, state.ErrBadSnapshot)
			require.Empty(t, cmp.Diff(before, statetest.Dump(t, dst, 1)))
		}
	})
}
