package archive_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
)

func TestShutdownCommitsOpenRange(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	dir, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	sent := sendEvents(300)
	publishEvents(t, b, sent, 30)
	cfg := testConfig()
	cfg.FlushInterval = time.Hour // only Shutdown can commit
	r := start(t, cfg, b, dir, nil)
	eventually(t, 10*time.Second, func() bool {
		n, oldest := r.a.Lag()
		return n >= 10 && !oldest.IsZero()
	}, "messages never held")
	_, oldest := r.a.Lag()
	require.WithinDuration(t, time.Now(), oldest, time.Minute)
	require.Zero(t, committedRows(t, dir, archive.TableEvents))
	r.shutdown(t)
	requireExactlyOnce(t, dir, sent)
	requireDrained(t, b, cfg)
	require.Equal(t, 300.0, metric(t, r.reg, "clickpipe_archive_rows_written_total", archive.TableEvents))
	require.Positive(t, metric(t, r.reg, "clickpipe_archive_committed_sequence", archive.TableEvents))
	require.Zero(t, metric(t, r.reg, "clickpipe_archive_lag_messages", archive.TableEvents))
	n, oldest := r.a.Lag()
	require.Zero(t, n)
	require.True(t, oldest.IsZero())
}

func TestShutdownDeadlineAbandonsWhileStoreDown(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	dir, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	sent := sendEvents(100)
	publishEvents(t, b, sent, 20)
	down := &faultStore{ObjectStore: dir, failPut: func(string) error { return errors.New("injected: store down") }}
	cfg := testConfig()
	r := start(t, cfg, b, down, nil)
	eventually(t, 10*time.Second, func() bool { n, _ := r.a.Lag(); return n > 0 }, "nothing held")
	eventually(t, 10*time.Second, func() bool {
		return metric(t, r.reg, "clickpipe_archive_upload_errors_total", archive.TableEvents) > 1
	}, "upload errors not counted")
	require.Equal(t, 1.0, metric(t, r.reg, "clickpipe_archive_behind", archive.TableEvents))
	require.Positive(t, metric(t, r.reg, "clickpipe_archive_lag_messages", archive.TableEvents))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = r.a.Shutdown(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, <-r.err)
	r.err <- nil
	require.Zero(t, committedRows(t, dir, archive.TableEvents))

	// Nothing was acked: a new archiver on a healthy store gets it all.
	r2 := start(t, cfg, b, dir, nil)
	eventually(t, 20*time.Second, func() bool { return committedRows(t, dir, archive.TableEvents) == 100 }, "not redelivered")
	r2.shutdown(t)
	requireExactlyOnce(t, dir, sent)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*archive.Config)
		want string
	}{
		{"defaults", func(*archive.Config) {}, ""},
		{"absolute dir", func(c *archive.Config) { c.URL = "file:///var/lib/lake" }, ""},
		{"s3 with prefix", func(c *archive.Config) { c.URL = "s3://bucket/a/b" }, ""},
		{"s3 without bucket", func(c *archive.Config) { c.URL = "s3:///x" }, "archive.url"},
		{"unknown scheme", func(c *archive.Config) { c.URL = "gs://b" }, "archive.url"},
		{"file with host", func(c *archive.Config) { c.URL = "file://host/x" }, "archive.url"},
		{"tiny interval", func(c *archive.Config) { c.FlushInterval = time.Millisecond }, "archive.flush_interval"},
		{"tiny flush bytes", func(c *archive.Config) { c.FlushBytes = 10 }, "archive.flush_bytes"},
		{"no pending", func(c *archive.Config) { c.MaxPending = 0 }, "archive.max_pending"},
		{"short ack wait", func(c *archive.Config) { c.AckWait = time.Millisecond }, "archive.ack_wait"},
		{"retry order", func(c *archive.Config) { c.RetryMax = c.RetryMin / 2 }, "archive.retry_min"},
		{"s3 timeout", func(c *archive.Config) { c.S3.Timeout = 0 }, "archive.s3.timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := archive.DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestDefaultURLIsRelativeDir(t *testing.T) {
	cfg := archive.DefaultConfig()
	t.Chdir(t.TempDir())
	st, err := archive.OpenStore(t.Context(), cfg)
	require.NoError(t, err)
	require.Equal(t, "./data/lake", st.(*archive.DirStore).Root())
}

// TestUploadBackoffIsCappedAndEndless runs the upload retry loop against a
// store that is down for an hour of fake time: attempts keep coming, spaced
// no more than RetryMax apart, and the range commits once it is back.
func TestUploadBackoffIsCappedAndEndless(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir, err := archive.OpenDir(t.TempDir())
		require.NoError(t, err)
		cfg := testConfig()
		cfg.RetryMin, cfg.RetryMax = time.Second, 30*time.Second
		var attempts []time.Time
		start := time.Now()
		st := &faultStore{ObjectStore: dir, failPut: func(string) error {
			attempts = append(attempts, time.Now())
			if time.Since(start) < time.Hour {
				return errors.New("injected: down")
			}
			return nil
		}}
		committed, err := archive.PutWithRetryForTest(t.Context(), cfg, st, "events/x.parquet", []byte("x"))
		require.NoError(t, err)
		require.True(t, committed)
		require.Greater(t, len(attempts), 100) // ~3600 s / ≤30 s
		for i := 1; i < len(attempts); i++ {
			require.LessOrEqual(t, attempts[i].Sub(attempts[i-1]), cfg.RetryMax)
		}
		require.GreaterOrEqual(t, attempts[len(attempts)-1].Sub(start), time.Hour)
	})
}
