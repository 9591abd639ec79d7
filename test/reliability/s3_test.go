package reliability

import (
	"context"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/archive/s3test"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// T5: the object store refuses connections for a while under load, and
// clickpipe is kill -9'd once during the outage and once during catch-up.
// Ingest is unaffected, the backlog waits in JetStream, and afterwards the
// committed ranges are contiguous and every event is in the lake once.
func TestT5ObjectStoreOutage(t *testing.T) {
	gw := s3test.Start(t)
	proxy := s3test.NewFaultProxy(t, gw.Addr)
	outage := 10 * time.Second
	if long() {
		outage = 60 * time.Second
	}
	env := []string{
		"CLICKPIPE_ARCHIVE_URL=s3://lake/cp",
		"CLICKPIPE_ARCHIVE_S3_ENDPOINT=" + proxy.Addr,
		"CLICKPIPE_ARCHIVE_S3_ACCESS_KEY=" + s3test.AccessKey,
		"CLICKPIPE_ARCHIVE_S3_SECRET_KEY=" + s3test.SecretKey,
		"CLICKPIPE_ARCHIVE_S3_SECURE=false",
		"CLICKPIPE_ARCHIVE_S3_PATH_STYLE=true",
		"CLICKPIPE_ARCHIVE_S3_CREATE_BUCKET=true",
		"CLICKPIPE_ARCHIVE_S3_TIMEOUT=2s",
		"CLICKPIPE_ARCHIVE_FLUSH_INTERVAL=1s",
		"CLICKPIPE_ARCHIVE_RETRY_MAX=1s",
	}
	dir := t.TempDir()
	start := func() (*clickpipetest.Proc, string) {
		p := clickpipetest.Start(t, dir, env...)
		return p, p.Find("ready", 30*time.Second)["ingest"].(string)
	}
	p, addr := start()
	drv, stopLoad := loadAgainst(t, dir, addr)
	defer stopLoad()
	kill := func() {
		require.NoError(t, p.Cmd.Process.Signal(syscall.SIGKILL))
		p.Wait(10 * time.Second)
		p, addr = start()
		drv.setAddr(addr)
	}

	time.Sleep(2 * time.Second)
	proxy.Set(s3test.FaultRefuse)
	okAtOutage := status(drv, http.StatusOK)
	time.Sleep(outage / 2)
	kill() // during the outage
	time.Sleep(outage / 2)
	require.Greater(t, status(drv, http.StatusOK), okAtOutage+20, "ingest kept accepting while the store was down")
	proxy.Set(s3test.FaultNone)
	time.Sleep(time.Second)
	kill() // during catch-up
	time.Sleep(time.Second)
	stopLoad()

	lakeDir := filepath.Join(gw.Dir, "lake", "cp")
	_, acked := drv.snapshot()
	clickpipetest.Eventually(t, 60*time.Second, func() bool {
		ids, err := lakeIDsAt(lakeDir)
		if err != nil {
			return false
		}
		for id := range acked {
			if ids["dev/"+id] == 0 {
				return false
			}
		}
		return true
	}, "every acknowledged event committed to the lake after the outage")
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)

	stored, err := streamIDs(dir, partitions)
	require.NoError(t, err)
	sent, _ := drv.snapshot()
	r := report{Test: t.Name(), Cycles: 2}
	compare(&r, sent, acked, stored)
	lake, err := lakeIDsAt(lakeDir)
	require.NoError(t, err)
	compareLake(&r, stored, lake, "dev")
	r.log(t)
	require.Zero(t, r.Lost)
	require.Zero(t, r.DupArchive, "events in two committed lake objects")
	require.Zero(t, r.MissingArchive)
	require.Zero(t, r.UnexpectedArchive)

	st, err := archive.OpenDir(lakeDir)
	require.NoError(t, err)
	l, err := archive.LoadLedger(context.Background(), st, archive.TableEvents)
	require.NoError(t, err)
	require.Empty(t, l.Gaps, "committed ranges have gaps")
	require.Empty(t, l.Overlaps, "committed ranges overlap")
}
