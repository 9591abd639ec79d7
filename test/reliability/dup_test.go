package reliability

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

const (
	keyWeb = "write-key-web-0001"
	keyTV  = "write-key-tv-00002"
	token  = "query-token-0001"
)

func twoSourceConfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`
ingest:
  sources:
    - {name: web, write_key: `+keyWeb+`}
    - {name: tv, write_key: `+keyTV+`}
query:
  tokens: [`+token+`]
`), 0o600))
	return p
}

func postBatch(t *testing.T, addr, key string, body []byte) int {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/batch", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(key+":")))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// appliedEventually waits until the user's sessions hold want events and
// stay there.
func appliedEventually(t *testing.T, query, user string, want int) {
	t.Helper()
	clickpipetest.Eventually(t, 20*time.Second, func() bool {
		return appliedPerUser(t, query, token, []string{user})[user] == want
	}, "%s to hold %d events", user, want)
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, want, appliedPerUser(t, query, token, []string{user})[user], "and stay there")
}

// T8: the same batch three times at once, again after a restart, and
// under a second write key: counted once per (source, messageId).
func TestT8Duplicates(t *testing.T) {
	dir := t.TempDir()
	cfg := twoSourceConfig(t)
	p := clickpipetest.StartWith(t, "", dir, []string{"--config", cfg})
	ready := p.Find("ready", 30*time.Second)
	ingest, query := ready["ingest"].(string), ready["query"].(string)

	_, body := batch(0, 0, 20) // 20 events of user-0-0
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); require.Equal(t, http.StatusOK, postBatch(t, ingest, keyWeb, body)) }()
	}
	wg.Wait()
	appliedEventually(t, query, "user-0-0", 20)

	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	p.Wait(30 * time.Second)
	p = clickpipetest.StartWith(t, "", dir, []string{"--config", cfg})
	ready = p.Find("ready", 30*time.Second)
	ingest, query = ready["ingest"].(string), ready["query"].(string)
	require.Equal(t, http.StatusOK, postBatch(t, ingest, keyWeb, body))
	appliedEventually(t, query, "user-0-0", 20)

	// Dedup is scoped per write key (source): the same ids from another
	// source are other events.
	require.Equal(t, http.StatusOK, postBatch(t, ingest, keyTV, body))
	appliedEventually(t, query, "user-0-0", 40)
}

// Negative control for T8: a build that applies every copy is caught.
func TestT8CheckerCatchesMissingDedup(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.StartWith(t, "clickpipe_broken_no_dedup", dir, []string{"--config", twoSourceConfig(t)})
	ready := p.Find("ready", 30*time.Second)
	_, body := batch(0, 0, 20)
	for range 3 {
		require.Equal(t, http.StatusOK, postBatch(t, ready["ingest"].(string), keyWeb, body))
	}
	clickpipetest.Eventually(t, 20*time.Second, func() bool {
		return appliedPerUser(t, ready["query"].(string), token, []string{"user-0-0"})["user-0-0"] > 20
	}, "the broken build to apply duplicates (the checker sees more than 20)")
}
