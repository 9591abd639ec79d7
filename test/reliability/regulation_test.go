package reliability

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// T12 (RELIABILITY.md): deleting and suppressing a user, through the
// binary. The lake side (rewriting committed Parquet objects) is the
// archive's and is checked by its own tests.

const adminToken = "admin-token-t12-00001"

func regulationConfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`
ingest:
  sources:
    - {name: web, write_key: `+keyWeb+`}
query:
  tokens: [`+token+`]
  admin_tokens: ["ops=`+adminToken+`"]
`), 0o600))
	return p
}

// t12Node is one running node of the T12 tests.
type t12Node struct {
	p             *clickpipetest.Proc
	ingest, query string
}

func startT12(t *testing.T, tags, dir, cfg string) t12Node {
	p := clickpipetest.StartWith(t, tags, dir, []string{"--config", cfg})
	ready := p.Find("ready", 30*time.Second)
	return t12Node{p: p, ingest: ready["ingest"].(string), query: ready["query"].(string)}
}

func (n t12Node) stop(t *testing.T) {
	require.NoError(t, n.p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := n.p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
}

// admin sends one regulations API request with the admin token.
func admin(t *testing.T, query, method, path, body string) (int, map[string]any) {
	code, out, err := adminTry(query, method, path, body)
	require.NoError(t, err)
	return code, out
}

// adminTry is admin for a node that may die while it answers.
func adminTry(query, method, path, body string) (int, map[string]any, error) {
	req, err := http.NewRequest(method, "http://"+query+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

// history is a batch of events of one id (userId, or anonymousId when
// anon) starting at base: a page every minute, n of them.
func history(id string, anon bool, prefix string, base time.Time, n int) []map[string]any {
	var items []map[string]any
	for i := range n {
		ev := map[string]any{"type": "page", "name": fmt.Sprintf("screen-%d", i%3),
			"messageId": fmt.Sprintf("%s-%d", prefix, i), "timestamp": base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339Nano)}
		if anon {
			ev["anonymousId"] = id
		} else {
			ev["userId"] = id
		}
		items = append(items, ev)
	}
	return items
}

func send(t *testing.T, addr string, items ...[]map[string]any) {
	var all []map[string]any
	for _, it := range items {
		all = append(all, it...)
	}
	body, err := json.Marshal(map[string]any{"batch": all})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, postBatch(t, addr, keyWeb, body))
}

// userAnswers are the query API's answers about user without the fields
// that name the id or the moment (user_id, freshness).
func userAnswers(t *testing.T, query, user string) map[string]any {
	out := map[string]any{}
	for _, path := range []string{"sessions", "profile", "continue-watching"} {
		code, body := clickpipetest.GetAuth(t, "http://"+query+"/v1/users/"+user+"/"+path, token)
		require.Equal(t, http.StatusOK, code, body)
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &m))
		for _, k := range []string{"user_id", "as_of", "lag_seconds", "watermark"} {
			delete(m, k)
		}
		out[path] = m
	}
	return out
}

// counts are each user's applied events and sessions.
func counts(t *testing.T, query string, users []string) map[string][2]int {
	ev := appliedPerUser(t, query, token, users)
	out := map[string][2]int{}
	for _, u := range users {
		out[u] = [2]int{ev[u], sessionsOf(t, query, u)}
	}
	return out
}

// storedMessageIDs lists which of ids a stopped node's EVENTS stream holds.
func storedMessageIDs(t *testing.T, dir string, ids map[string]bool) []string {
	var found []string
	require.NoError(t, readStream(dir, buffer.EventsStream, func(_ uint64, line []byte) error {
		var ev struct {
			MessageID string `json:"messageId"`
		}
		if json.Unmarshal(line, &ev) == nil && ids[ev.MessageID] {
			found = append(found, ev.MessageID)
		}
		return nil
	}))
	return found
}

// sendSuppressed posts events of the suppressed ids (as userId and as
// anonymousId) and records their messageIds.
func sendSuppressed(t *testing.T, addr, tag string, sent map[string]bool, ids ...string) {
	now := time.Now().UTC()
	for _, id := range ids {
		for _, anon := range []bool{false, true} {
			prefix := fmt.Sprintf("%s-%s-%t", tag, id, anon)
			items := history(id, anon, prefix, now, 3)
			for _, it := range items {
				sent[it["messageId"].(string)] = true
			}
			send(t, addr, items)
		}
	}
}

func TestT12DeleteAndSuppressUser(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	dir, cfg := t.TempDir(), regulationConfig(t)
	n := startT12(t, "", dir, cfg)
	base := time.Now().UTC().Add(-3 * time.Hour)
	const victim, anon = "t12-victim", "t12-victim-anon"
	others := []string{"t12-other-0", "t12-other-1", "t12-other-2", "t12-other-3", "t12-other-4"}

	// History: the victim browsed anonymously, identified (linking the
	// anonymous id), and came back an hour later; five other users too.
	identify := []map[string]any{{"type": "identify", "userId": victim, "anonymousId": anon, "messageId": "t12-identify",
		"traits": map[string]any{"email": "victim@example.com"}, "timestamp": base.Add(6 * time.Minute).Format(time.RFC3339Nano)}}
	send(t, n.ingest, history(anon, true, "t12-anon", base, 5), identify,
		history(victim, false, "t12-victim-a", base.Add(7*time.Minute), 10),
		history(victim, false, "t12-victim-b", base.Add(time.Hour), 10))
	for i, u := range others {
		send(t, n.ingest, history(u, false, u+"-a", base.Add(time.Duration(i)*time.Minute), 8),
			history(u, false, u+"-b", base.Add(90*time.Minute), 4))
	}
	appliedEventually(t, n.query, victim, 5+1+20)
	for _, u := range others {
		appliedEventually(t, n.query, u, 12)
	}
	before := counts(t, n.query, others)
	unknown := userAnswers(t, n.query, "t12-never-seen")
	require.NotEqual(t, unknown, userAnswers(t, n.query, victim))

	// The request is refused without the admin token or with bad input.
	code, _ := admin(t, n.query, "POST", "/v1/regulations", `{"type":"delete","user_ids":[]}`)
	require.Equal(t, http.StatusBadRequest, code)
	code, body := clickpipetest.GetAuth(t, "http://"+n.query+"/v1/regulations", token)
	require.Equal(t, http.StatusUnauthorized, code, "a read token is not an admin token: %s", body)

	code, reg := admin(t, n.query, "POST", "/v1/regulations", `{"type":"suppress_with_delete","user_ids":["`+victim+`"]}`)
	require.Equal(t, http.StatusCreated, code, "%v", reg)
	// Suppression holds from the acknowledgement on.
	sent := map[string]bool{}
	sendSuppressed(t, n.ingest, "after-ack", sent, victim, anon)
	id := reg["id"].(string)
	require.ElementsMatch(t, []any{victim, anon}, reg["user_ids"], "the linked anonymous id is covered")
	require.Equal(t, "ops", reg["requested_by"])
	code, again := admin(t, n.query, "POST", "/v1/regulations", `{"type":"suppress_with_delete","user_ids":["`+victim+`"]}`)
	require.Equal(t, http.StatusOK, code, "the same request is the same regulation")
	require.Equal(t, id, again["id"])

	clickpipetest.Eventually(t, 20*time.Second, func() bool {
		_, r := admin(t, n.query, "GET", "/v1/regulations/"+id, "")
		st, _ := r["stores"].(map[string]any)["state"].(map[string]any)
		return st["status"] == "done"
	}, "the serving state's part of %s done", id)
	_, r := admin(t, n.query, "GET", "/v1/regulations/"+id, "")
	st := r["stores"].(map[string]any)["state"].(map[string]any)
	require.Positive(t, st["found"], "%v", r)
	require.Positive(t, st["removed"], "%v", r)
	raw, _ := json.Marshal(r)
	require.NotContains(t, string(raw), "victim@example.com", "the audit keeps no deleted data")

	for _, u := range []string{victim, anon} {
		require.Equal(t, unknown, userAnswers(t, n.query, u), "%s answers as an unknown user", u)
	}
	require.Equal(t, before, counts(t, n.query, others), "every other user unchanged")
	require.Positive(t, metric(t, n.query, "clickpipe_ingest_suppressed_total"))

	// Right after a restart, suppression still holds.
	n.stop(t)
	n = startT12(t, "", dir, cfg)
	sendSuppressed(t, n.ingest, "after-restart", sent, victim, anon)
	time.Sleep(time.Second)
	require.Equal(t, unknown, userAnswers(t, n.query, victim))
	n.stop(t)
	require.Empty(t, storedMessageIDs(t, dir, sent), "suppressed events were stored")

	// A rebuild from the stream does not bring the user back.
	bin, err := clickpipetest.Binary()
	require.NoError(t, err)
	rb := exec.Command(bin, "rebuild", "--config", cfg)
	rb.Env = append(os.Environ(), "CLICKPIPE_DATA_DIR="+dir, "CLICKPIPE_BUFFER_PARTITIONS=4", "CLICKPIPE_BUFFER_MAX_BYTES=256MiB",
		"CLICKPIPE_DISK_MIN_FREE_BYTES=1MiB", "CLICKPIPE_DISK_MIN_FREE_PERCENT=0")
	out, err := rb.CombinedOutput()
	require.NoError(t, err, "%s", out)
	n = startT12(t, "", dir, cfg)
	for _, u := range others {
		appliedEventually(t, n.query, u, 12)
	}
	require.Equal(t, before, counts(t, n.query, others), "every other user unchanged after the rebuild")
	for _, u := range []string{victim, anon} {
		require.Equal(t, unknown, userAnswers(t, n.query, u), "%s still unknown after the rebuild", u)
	}
	code, list := admin(t, n.query, "GET", "/v1/regulations", "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, list["regulations"], 1)
	// The command line shows the same, with the admin token.
	cli, err := exec.Command(bin, "regulations", "get", id, "--url", "http://"+n.query, "--token", adminToken).CombinedOutput()
	require.NoError(t, err, "%s", cli)
	require.Regexp(t, `store state\s+done \(found [1-9]`, string(cli))
	require.Regexp(t, `requested by\s+ops`, string(cli))
	cli, err = exec.Command(bin, "regulations", "list", "--url", "http://"+n.query, "--token", token).CombinedOutput()
	require.Error(t, err, "a read token is refused: %s", cli)
	n.stop(t)
}

// suppressionLeaks suppresses a user on a node built with tags, restarts
// it, sends that user's events and returns those the stream stored.
func suppressionLeaks(t *testing.T, tags string) []string {
	dir, cfg := t.TempDir(), regulationConfig(t)
	n := startT12(t, tags, dir, cfg)
	code, reg := admin(t, n.query, "POST", "/v1/regulations", `{"type":"suppress","user_ids":["t12-optout"]}`)
	require.Equal(t, http.StatusCreated, code, "%v", reg)
	require.Equal(t, "completed", reg["status"], "a suppression has no store to clear")
	n.stop(t)
	n = startT12(t, tags, dir, cfg)
	sent := map[string]bool{}
	sendSuppressed(t, n.ingest, "restarted", sent, "t12-optout")
	n.stop(t)
	return storedMessageIDs(t, dir, sent)
}

// The suppression checker on its own, and its negative control: a build
// that forgets the suppression list on restart stores the events.
func TestT12SuppressionSurvivesRestart(t *testing.T) {
	require.Empty(t, suppressionLeaks(t, ""))
}

func TestT12CheckerCatchesForgottenSuppression(t *testing.T) {
	leaks := suppressionLeaks(t, "clickpipe_broken_forget_suppression")
	t.Logf("broken build stored %d suppressed events", len(leaks))
	require.NotEmpty(t, leaks)
}
