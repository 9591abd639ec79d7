package reliability

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// sessionsOf returns how many sessions the query API lists for user.
func sessionsOf(t *testing.T, query, user string) int {
	req, _ := http.NewRequest(http.MethodGet, "http://"+query+"/v1/users/"+user+"/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct{ Sessions []json.RawMessage }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return len(body.Sessions)
}

// eventTimeSessions sends one user's two bursts of activity 40 minutes
// apart in event time, in a single request, and returns how many sessions
// the node makes of them.
func eventTimeSessions(t *testing.T, tags string) int {
	dir := t.TempDir()
	p := clickpipetest.StartWith(t, tags, dir, []string{"--config", twoSourceConfig(t)})
	ready := p.Find("ready", 30*time.Second)
	base := time.Now().UTC().Add(-90 * time.Minute)
	var items []map[string]any
	for i, off := range []time.Duration{0, time.Minute, 40 * time.Minute, 41 * time.Minute} {
		items = append(items, map[string]any{
			"type": "page", "name": "Home", "userId": "et-user", "messageId": fmt.Sprintf("et-%d", i),
			"timestamp": base.Add(off).Format(time.RFC3339Nano),
		})
	}
	body, _ := json.Marshal(map[string]any{"batch": items})
	require.Equal(t, http.StatusOK, postBatch(t, ready["ingest"].(string), keyWeb, body))
	var n int
	clickpipetest.Eventually(t, 20*time.Second, func() bool {
		n = sessionsOf(t, ready["query"].(string), "et-user")
		return n > 0
	}, "sessions for et-user")
	time.Sleep(time.Second)
	return sessionsOf(t, ready["query"].(string), "et-user")
}

// Sessions are cut in event time: a 40-minute gap inside one request is two
// sessions, whenever the events arrive.
func TestSessionsInEventTime(t *testing.T) {
	require.Equal(t, 2, eventTimeSessions(t, ""))
}

// Negative control: cutting sessions by arrival time is caught.
func TestSessionsCheckerCatchesWallClock(t *testing.T) {
	require.NotEqual(t, 2, eventTimeSessions(t, "clickpipe_broken_wallclock"))
}
