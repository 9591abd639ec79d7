package disk

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWatermarkTripsBelowTheLargerFloor(t *testing.T) {
	cfg := Config{MinFreePercent: 10, MinFreeBytes: 2 << 30, CheckInterval: 1}
	w, err := NewWatermark(DefaultConfig(), t.TempDir())
	require.NoError(t, err)
	w.cfg = cfg
	for _, tc := range []struct {
		name        string
		free, total uint64
		low         bool
	}{
		{"plenty", 50 << 30, 100 << 30, false},
		{"below percent", 9 << 30, 100 << 30, true},
		{"above percent, below bytes", 1 << 30, 8 << 30, true},
		{"exactly the floor", 10 << 30, 100 << 30, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.measure = func(string) (Usage, error) { return Usage{Free: tc.free, Total: tc.total}, nil }
			err := w.Check()
			require.Equal(t, tc.low, errors.Is(err, ErrLowSpace), "err=%v", err)
			require.Equal(t, err, w.Err())
		})
	}
	w.measure = func(string) (Usage, error) { return Usage{}, errors.New("statfs failed") }
	require.ErrorContains(t, w.Check(), "statfs failed", "a failed measurement is not healthy")
}

func TestMeasureRealFilesystem(t *testing.T) {
	u, err := Measure(t.TempDir())
	require.NoError(t, err)
	require.Positive(t, u.Total)
	require.LessOrEqual(t, u.Free, u.Total)
}

func TestValidateNamesKeys(t *testing.T) {
	require.ErrorContains(t, Config{MinFreePercent: 100, CheckInterval: 1e9}.Validate(), "disk.min_free_percent")
	require.ErrorContains(t, Config{MinFreeBytes: -1, CheckInterval: 1e9}.Validate(), "disk.min_free_bytes")
	require.ErrorContains(t, Config{CheckInterval: 0}.Validate(), "disk.check_interval")
}
