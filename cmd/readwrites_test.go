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

// postTrack sends one track event for user and returns its position.
func postTrack(tb testing.TB, ingestAddr, key, user string, n int) string {
	body := fmt.Sprintf(`{"userId":%q,"event":"Video Playback Started","messageId":"m-%s-%d","properties":{"asset_id":"t1","position":0}}`, user, user, n)
	req, err := http.NewRequest(http.MethodPost, "http://"+ingestAddr+"/v1/track", strings.NewReader(body))
	require.NoError(tb, err)
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(tb, http.StatusOK, resp.StatusCode)
	return resp.Header.Get(ingest.PositionHeader)
}

// BenchmarkReadYourWrites: one op is a track POST and the profile query
// given its position (?after=), against an idle binary on defaults: the
// click → queryable time a client that reads its own writes sees.
//
//	go test -run '^$' -bench ReadYourWrites -benchtime 200x -count 5 ./cmd/
func BenchmarkReadYourWrites(b *testing.B) {
	dir := b.TempDir()
	p := clickpipetest.Start(b, dir)
	ready := p.Find("ready", 30*time.Second)
	ingestAddr, query := ready["ingest"].(string), ready["query"].(string)
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(b, err)
	b.ResetTimer()
	for i := range b.N {
		user := fmt.Sprintf("bench-%d", i)
		pos := postTrack(b, ingestAddr, strings.TrimSpace(string(key)), user, i)
		req, _ := http.NewRequest(http.MethodGet, "http://"+query+"/v1/users/"+user+"/profile?after="+pos, nil)
		req.Header.Set("Authorization", "Bearer "+clickpipetest.DevQueryToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(b, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(b, http.StatusOK, resp.StatusCode)
	}
}

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
		pos := postTrack(t, ingestAddr, strings.TrimSpace(string(key)), user, i)
		require.Regexp(t, `^\d+:\d+$`, pos, "one event, one partition")
		code, answer := clickpipetest.GetAuth(t, "http://"+query+"/v1/users/"+user+"/profile?after="+pos, clickpipetest.DevQueryToken)
		require.Equal(t, http.StatusOK, code, answer)
		require.Contains(t, answer, `"known":true`, "the query given the position saw the event")
	}
}
