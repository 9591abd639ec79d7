package cmd_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/ingest"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// Read-your-writes through the binary: every track POST answers with its
// position, and a profile query given it as ?after= right away always
// sees the event (each user is new, so a query that ran before the
// sessionizer applied the event would answer known: false).
func TestReadYourWritesThroughTheBinary(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	ready := p.Find("ready", 30*time.Second)
	ingestAddr, query := ready["ingest"].(string), ready["query"].(string)
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(t, err)
	for i := range 20 {
		user := fmt.Sprintf("ryw-%d", i)
		body := fmt.Sprintf(`{"userId":%q,"event":"Video Playback Started","messageId":"m-%d","properties":{"asset_id":"t1","position":0}}`, user, i)
		req, err := http.NewRequest(http.MethodPost, "http://"+ingestAddr+"/v1/track", strings.NewReader(body))
		require.NoError(t, err)
		req.SetBasicAuth(strings.TrimSpace(string(key)), "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		pos := resp.Header.Get(ingest.PositionHeader)
		require.Regexp(t, `^\d+:\d+$`, pos, "one event, one partition")
		code, answer := clickpipetest.GetAuth(t, "http://"+query+"/v1/users/"+user+"/profile?after="+pos, clickpipetest.DevQueryToken)
		require.Equal(t, http.StatusOK, code, answer)
		require.Contains(t, answer, `"known":true`, "the query given the position saw the event")
	}
}
