package cmd

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
	"github.com/stretchr/testify/require"
)

// The lifecycle end to end through the built binary: ready on both
// listeners, SIGTERM drains in the documented order and exits 0.
func TestServeStartsAndDrainsInOrder(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	ready := p.Find("ready", 30*time.Second)
	ingest, query := ready["ingest"].(string), ready["query"].(string)
	for _, addr := range []string{ingest, query} {
		code, body := clickpipetest.Get(t, "http://"+addr+"/readyz")
		require.Equal(t, http.StatusOK, code, body)
		code, _ = clickpipetest.Get(t, "http://"+addr+"/healthz")
		require.Equal(t, http.StatusOK, code)
	}
	code, _ := clickpipetest.Get(t, "http://"+query+"/metrics")
	require.Equal(t, http.StatusUnauthorized, code, "/metrics needs the query token")
	var metrics string
	code, _ = clickpipetest.Get(t, "http://"+query+"/debug/pprof/")
	require.Equal(t, http.StatusUnauthorized, code, "/debug/pprof needs the query token")
	code, metrics = clickpipetest.GetAuth(t, "http://"+query+"/metrics", clickpipetest.DevQueryToken)
	require.Equal(t, http.StatusOK, code)
	for _, m := range []string{"clickpipe_buffer_stream_messages", "clickpipe_buffer_stream_last_sequence", "go_goroutines", "clickpipe_process_cpu_seconds_total"} {
		require.Contains(t, metrics, m)
	}
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(t, err)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, took := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
	require.Less(t, took, 25*time.Second)
	require.Contains(t, p.Stdout(), strings.TrimSpace(string(key)), "dev write key printed")

	var order []string
	for _, l := range p.All("stopped") {
		order = append(order, l["component"].(string))
	}
	require.Equal(t, stopOrder, order)
	_, err = os.Stat(filepath.Join(dir, "RUNNING"))
	require.True(t, os.IsNotExist(err), "clean stop removes the running marker")
}

func TestSecondProcessOnSameDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	first := clickpipetest.Start(t, dir)
	first.Find("ready", 30*time.Second)
	second := clickpipetest.Start(t, dir)
	exit, _ := second.Wait(30 * time.Second)
	require.NotEqual(t, 0, exit)
	clickpipetest.Eventually(t, 5*time.Second, func() bool {
		for _, l := range second.Lines() {
			if raw, _ := l["raw"].(string); strings.Contains(raw, "in use") {
				return true
			}
		}
		return false
	}, "an 'in use' error from the second process")
	code, _ := clickpipetest.Get(t, "http://"+first.Find("ready", time.Second)["query"].(string)+"/readyz")
	require.Equal(t, http.StatusOK, code, "the first process is unaffected")
}

func TestRecoversAfterKill9(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	p.Find("ready", 30*time.Second)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGKILL))
	p.Wait(10 * time.Second)

	t0 := time.Now()
	p2 := clickpipetest.Start(t, dir)
	p2.Find("ready", 30*time.Second)
	require.Less(t, time.Since(t0), 10*time.Second, "ready within seconds after kill -9")
	require.NotEmpty(t, p2.All("previous run did not shut down cleanly (kill -9, crash or power loss); recovering from the stores"))
	require.NoError(t, p2.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p2.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
}

// Below the disk watermark the process runs but is not ready.
func TestDiskWatermarkMakesNotReady(t *testing.T) {
	p := clickpipetest.Start(t, t.TempDir(), "CLICKPIPE_DISK_MIN_FREE_PERCENT=99.99")
	ready := p.Find("ready", 30*time.Second)
	clickpipetest.Eventually(t, 5*time.Second, func() bool {
		code, body := clickpipetest.Get(t, "http://"+ready["query"].(string)+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "below watermark")
	}, "readyz 503 naming the disk watermark")
}

func TestCheckCommand(t *testing.T) {
	bin, err := clickpipetest.Binary()
	require.NoError(t, err)
	out, err := exec.Command(bin, "check", "--config", "../config.yaml").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "configuration OK")

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("buffer:\n  retention: forever\n"), 0o600))
	cmd := exec.Command(bin, "check", "--config", bad)
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	require.Equal(t, 2, cmd.ProcessState.ExitCode())
	require.Contains(t, string(out), "retention")
}
