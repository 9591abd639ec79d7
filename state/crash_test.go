package state_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

// TestImportChild is the process TestImportKilled kills: it imports the
// snapshot file into partition 1 of the store in dir.
func TestImportChild(t *testing.T) {
	dir, snapFile := os.Getenv("CLICKPIPE_SNAP_DIR"), os.Getenv("CLICKPIPE_SNAP_FILE")
	if dir == "" {
		t.Skip("run by TestImportKilled")
	}
	st := statetest.New(t, statetest.Options(), dir)
	f, err := os.Open(snapFile)
	require.NoError(t, err)
	fi, err := f.Stat()
	require.NoError(t, err)
	os.Stderr.WriteString("importing\n")
	_, err = st.Import(1, f, fi.Size())
	require.NoError(t, err)
	os.Stderr.WriteString("imported\n")
}

// TestImportKilled kills (SIGKILL) a process in the middle of an import,
// at several moments, then opens the store: partition 1 is the old state,
// the new state, or marked pending without a checkpoint, never anything
// else; the other partitions are untouched. Which of the three a kill hits
// depends on the machine; each is logged.
func TestImportKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	src := statetest.New(t, statetest.Options(), "")
	statetest.Fill(t, src, 1, 1000, 9000, "new")
	var buf bytes.Buffer
	_, err := src.Export(1, 1, &buf)
	require.NoError(t, err)
	snapFile := filepath.Join(t.TempDir(), "p1.snap")
	require.NoError(t, os.WriteFile(snapFile, buf.Bytes(), 0o644))
	newState := statetest.Dump(t, src, 1)

	for _, delay := range []time.Duration{0, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond} {
		dir := t.TempDir()
		st := statetest.New(t, statetest.Options(), dir)
		for p := range 3 {
			statetest.Fill(t, st, p, 200, 100, "old")
		}
		before := dumpAll(t, st, 3)
		require.NoError(t, st.Close())

		killImport(t, dir, snapFile, delay)

		st = statetest.New(t, statetest.Options(), dir)
		after := dumpAll(t, st, 3)
		require.Empty(t, cmp.Diff(before[0], after[0]))
		require.Empty(t, cmp.Diff(before[2], after[2]))
		_, err := st.Position(1)
		switch {
		case errors.Is(err, state.ErrRestorePending):
			_, found := after[1][string(state.CheckpointKey(1))]
			require.False(t, found)
			t.Logf("killed after %s: restore pending (%d of %d keys loaded)", delay, len(after[1]), len(newState))
		case cmp.Equal(before[1], after[1]):
			t.Logf("killed after %s: old state", delay)
		default:
			require.NoError(t, err)
			require.Empty(t, cmp.Diff(newState, after[1]))
			t.Logf("killed after %s: new state", delay)
		}
		require.NoError(t, st.Close())
	}
}

// killImport starts TestImportChild and kills it delay after it began
// importing (or lets it finish when it is faster).
func killImport(t *testing.T, dir, snapFile string, delay time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestImportChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CLICKPIPE_SNAP_DIR="+dir, "CLICKPIPE_SNAP_FILE="+snapFile)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := bufio.NewScanner(stderr)
	for lines.Scan() && lines.Text() != "importing" {
	}
	time.Sleep(delay)
	_ = cmd.Process.Kill()
	for lines.Scan() {
	}
	_ = cmd.Wait()
}
