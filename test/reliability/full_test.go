package reliability

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// loadAgainst runs the driver (2 workers) against a started node until the
// returned stop is called.
func loadAgainst(t *testing.T, dir, addr string) (*driver, func()) {
	return startLoad(t, dir, addr, 2)
}

// startLoad runs the driver with workers against a started node, using the
// node's development write key, until the returned stop is called.
func startLoad(t *testing.T, dir, addr string, workers int) (*driver, func()) {
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(t, err)
	drv, err := newDriver(strings.TrimSpace(string(key)), filepath.Join(t.TempDir(), "witness.log"))
	require.NoError(t, err)
	drv.setAddr(addr)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); drv.run(ctx, workers, 50) }()
	var once sync.Once
	return drv, func() { once.Do(func() { cancel(); wg.Wait() }) }
}

func status(drv *driver, code int) int {
	st, _, _, _ := drv.counts()
	return st[code]
}

func stopAndCheck(t *testing.T, p *clickpipetest.Proc, dir string, drv *driver) report {
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
	stored, err := streamIDs(dir, partitions)
	require.NoError(t, err)
	sent, acked := drv.snapshot()
	r := report{Test: t.Name()}
	compare(&r, sent, acked, stored)
	_, _, _, noRetryAfter := drv.counts()
	require.Zero(t, noRetryAfter, "every 503 carries Retry-After")
	r.log(t)
	require.Zero(t, r.Lost, "acknowledged events lost: %v", r.LostSample)
	return r
}

// T4a: a full stream answers 503 + Retry-After (DiscardNew), readiness
// turns false, nothing acknowledged is lost and the process stays up.
func TestT4StreamFull(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir, "CLICKPIPE_BUFFER_MAX_BYTES=2MiB")
	ready := p.Find("ready", 30*time.Second)
	drv, stop := loadAgainst(t, dir, ready["ingest"].(string))
	clickpipetest.Eventually(t, 60*time.Second, func() bool { return status(drv, http.StatusServiceUnavailable) > 0 },
		"503 once the stream is full")
	clickpipetest.Eventually(t, 5*time.Second, func() bool {
		code, _ := clickpipetest.Get(t, "http://"+ready["query"].(string)+"/readyz")
		return code == http.StatusServiceUnavailable
	}, "readyz false while the stream is full")
	closed := p.Find("intake gate closed: ingest answers 503 + Retry-After", 5*time.Second)
	require.Contains(t, closed["reason"], "EVENTS", "the gate logs why it closed")
	stop()
	r := stopAndCheck(t, p, dir, drv)
	require.Positive(t, r.Acked)
}

// T4b: the disk watermark on a small tmpfs: below the floor ingest
// answers 503 and readiness is false; when space returns intake resumes
// without a restart.
func TestT4DiskWatermark(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=192m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	p := clickpipetest.Start(t, dir,
		"CLICKPIPE_DISK_MIN_FREE_BYTES=64MiB", "CLICKPIPE_DISK_CHECK_INTERVAL=100ms",
		"CLICKPIPE_BUFFER_MAX_BYTES=64MiB", "CLICKPIPE_BUFFER_FAILED_MAX_BYTES=8MiB")
	ready := p.Find("ready", 30*time.Second)
	drv, stop := loadAgainst(t, dir, ready["ingest"].(string))
	defer stop()
	clickpipetest.Eventually(t, 10*time.Second, func() bool { return status(drv, http.StatusOK) > 5 }, "some 200s")

	filler := filepath.Join(dir, "filler")
	fillTo(t, filler, dir, 40<<20)
	clickpipetest.Eventually(t, 10*time.Second, func() bool { return status(drv, http.StatusServiceUnavailable) > 0 },
		"503 below the disk watermark")
	code, body := clickpipetest.Get(t, "http://"+ready["query"].(string)+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "below watermark")

	require.NoError(t, os.Remove(filler))
	before := status(drv, http.StatusOK)
	clickpipetest.Eventually(t, 10*time.Second, func() bool { return status(drv, http.StatusOK) > before+5 },
		"intake resumes once space returns, without a restart")
	stop()
	stopAndCheck(t, p, dir, drv)
}

// fillTo writes a file until the filesystem has about free bytes left.
func fillTo(t *testing.T, path, dir string, free int64) {
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(dir, &st))
	avail := int64(st.Bavail) * st.Bsize
	size := avail - free
	require.Positive(t, size)
	f, err := os.Create(path)
	require.NoError(t, err)
	chunk := make([]byte, 1<<20)
	for written := int64(0); written < size; written += int64(len(chunk)) {
		_, err := f.Write(chunk[:min(int64(len(chunk)), size-written)])
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
}
