package datadir

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLockAndUncleanMarker(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	require.NoError(t, err)
	require.False(t, d.Unclean())

	_, err = Open(dir)
	require.ErrorIs(t, err, ErrLocked)

	// Closing without MarkClean is what a crash looks like.
	require.NoError(t, d.Close())
	d, err = Open(dir)
	require.NoError(t, err)
	require.True(t, d.Unclean())
	require.NoError(t, d.MarkClean())
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "idempotent")

	d, err = Open(dir)
	require.NoError(t, err)
	require.False(t, d.Unclean())
	require.NoError(t, d.Close())
}
