package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// `clickpipe failed replay` after a config change: an item rejected as too
// large is accepted once max_event_bytes is raised, an item without a user
// fails again with the same reason, and a second replay is deduplicated.
func TestFailedReplayAfterConfigChange(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	ready := p.Find("ready", 60*time.Second)
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(t, err)
	big := strings.Repeat("x", 40<<10)
	body := `{"batch":[{"type":"track","event":"Fine","userId":"u-ok"},
		{"type":"track","event":"Big","userId":"u-big","messageId":"big-1","properties":{"pad":"` + big + `"}},
		{"type":"track","event":"Nobody"}]}`
	req, err := http.NewRequest(http.MethodPost, "http://"+ready["ingest"].(string)+"/v1/batch", strings.NewReader(body))
	require.NoError(t, err)
	req.SetBasicAuth(strings.TrimSpace(string(key)), "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	replay := func(ready map[string]any, args ...string) string {
		t.Helper()
		bin, err := clickpipetest.Binary()
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"failed", "replay", "--data-dir", dir,
			"--url", "http://" + ready["query"].(string), "--target", "http://" + ready["ingest"].(string)}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "stderr: %s", stderr.String())
		return stdout.String()
	}
	out := replay(ready, "--dry-run")
	require.Contains(t, out, "matched 2 failed items (item_too_large: 1, no_user_anon_id: 1); would resubmit 2")

	// Raise the limit and restart on the same data dir.
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	code, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, code)
	p = clickpipetest.Start(t, dir, "CLICKPIPE_INGEST_MAX_EVENT_BYTES=60KiB")
	ready = p.Find("ready", 60*time.Second)

	out = replay(ready, "--reason", "item_too_large")
	require.Contains(t, out, "resubmitted 1, accepted 1, failed again 0")
	out = replay(ready, "--reason", "no_user_anon_id")
	require.Contains(t, out, "resubmitted 1, accepted 0, failed again 1 (no_user_anon_id: 1)")
	query := "http://" + ready["query"].(string)
	tok, err := os.ReadFile(filepath.Join(dir, "dev-query-token"))
	require.NoError(t, err)
	token := strings.TrimSpace(string(tok))
	clickpipetest.Eventually(t, 10*time.Second, func() bool {
		var prof struct{ Known bool }
		getJSON(t, query+"/v1/users/u-big/profile", token, &prof)
		return prof.Known
	}, "u-big in the serving state")

	// Replaying again re-sends the same messageId: counted once.
	out = replay(ready, "--reason", "item_too_large")
	require.Contains(t, out, "resubmitted 1, accepted 1")
	clickpipetest.Eventually(t, 10*time.Second, func() bool {
		_, m := clickpipetest.GetAuth(t, query+"/metrics", token)
		return strings.Contains(m, `clickpipe_process_events_total{result="duplicate"} 1`)
	}, "the second replay counted as a duplicate")
}
