package reliability

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// T12, the lake: a deleted user's rows leave every table of the lake
// (events, sessions, failed) through a kill -9 in the middle of the
// rewrite, glob and manifest readers agree, and every other user's rows
// stay as they were.

// lakeOwner is the part of a row of any table that names its user.
type lakeOwner struct {
	MessageID   string `parquet:"message_id,optional"`
	UserID      string `parquet:"user_id,optional"`
	AnonymousID string `parquet:"anonymous_id,optional"`
	UserKey     string `parquet:"user_key,optional"`
	SessionID   string `parquet:"session_id,optional"`
	Raw         []byte `parquet:"raw,optional"`
}

func (o lakeOwner) owner(table string) string {
	switch table {
	case archive.TableSessions:
		return o.UserKey
	case archive.TableFailed:
		var item struct {
			UserID      string `json:"userId"`
			AnonymousID string `json:"anonymousId"`
		}
		_ = json.Unmarshal(o.Raw, &item)
		return item.UserID + item.AnonymousID
	}
	if o.UserID != "" {
		return o.UserID
	}
	return o.AnonymousID
}

// lakeRows counts rows per user per table, reading every Parquet file
// under the tables' prefixes (glob) or only the committed ones (manifest).
func lakeRows(t *testing.T, lake string, glob bool) map[string]map[string]int {
	t.Helper()
	st, err := archive.OpenDir(lake)
	require.NoError(t, err)
	out := map[string]map[string]int{}
	add := func(table string, data []byte) {
		rows, err := parquet.Read[lakeOwner](bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err)
		for _, r := range rows {
			out[table][r.owner(table)]++
		}
	}
	for _, table := range archive.Tables() {
		out[table] = map[string]int{}
		if !glob {
			objs, err := archive.CommittedObjects(t.Context(), st, table)
			require.NoError(t, err)
			for _, o := range objs {
				data, err := archive.ReadObject(t.Context(), st, o.Key)
				require.NoError(t, err)
				add(table, data)
			}
			continue
		}
		err := filepath.WalkDir(filepath.Join(lake, table), func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".parquet") {
				return err
			}
			data, err := os.ReadFile(p)
			if err == nil {
				add(table, data)
			}
			return err
		})
		if !errors.Is(err, fs.ErrNotExist) {
			require.NoError(t, err)
		}
	}
	return out
}

func duckdbUserRows(t *testing.T, qdir, lake, table, user string) int {
	t.Helper()
	var s struct {
		UserRows int `json:"user_rows"`
	}
	duckdbJSON(t, qdir, &s, lake, table, "--glob", "--user", user)
	return s.UserRows
}

type eraseReport struct {
	// Left counts the deleted users' rows still in the lake, per table.
	Left map[string]int
	// OthersChanged counts other users whose row count changed.
	OthersChanged int
	// Disagree counts (table, user) pairs where glob and manifest reads
	// differ.
	Disagree  int
	Completed bool
	// PendingShown counts tables `archive status` shows with pending
	// erasures at the end.
	PendingShown int
}

// eraseFromLake builds a history of several hours and files for a victim
// and others, deletes the victim on a node that stops itself in the
// middle of the lake rewrite, restarts it and reports what the lake holds.
func eraseFromLake(t *testing.T, tags string) eraseReport {
	dir, cfg := t.TempDir(), regulationConfig(t)
	lake := filepath.Join(dir, "lake")
	n := startT12(t, tags, dir, cfg)
	const victim, anon = "t12-lake-victim", "t12-lake-anon"
	others := []string{"t12-lake-other-0", "t12-lake-other-1", "t12-lake-other-2"}
	base := time.Now().UTC().Add(-5 * time.Hour)
	identify := []map[string]any{{"type": "identify", "userId": victim, "anonymousId": anon, "messageId": "t12-lake-identify",
		"timestamp": base.Add(6 * time.Minute).Format(time.RFC3339Nano)}}
	// Several hours, one range (file set) per wave: sessions close when
	// the next wave starts hours later.
	for wave := range 4 {
		at := base.Add(time.Duration(wave) * 70 * time.Minute)
		items := [][]map[string]any{history(victim, false, fmt.Sprintf("lv-%d", wave), at, 6)}
		if wave == 0 {
			items = append(items, history(anon, true, "la", at, 5), identify)
		}
		for _, u := range others {
			items = append(items, history(u, false, fmt.Sprintf("%s-%d", u, wave), at, 5))
		}
		send(t, n.ingest, items...)
		time.Sleep(1200 * time.Millisecond) // archive.flush_interval is 1 s in tests
	}
	// An invalid item of the victim goes to the failed table.
	body := fmt.Sprintf(`{"batch":[{"type":"bogus","userId":%q,"messageId":"lv-bad"}]}`, victim)
	postBatch(t, n.ingest, keyWeb, []byte(body))
	clickpipetest.Eventually(t, 30*time.Second, func() bool {
		rows := lakeRows(t, lake, false)
		return rows[archive.TableEvents][victim] >= 24 && rows[archive.TableSessions][victim] >= 3 &&
			rows[archive.TableFailed][victim] >= 1
	}, "the victim's history in the events, sessions and failed tables")
	before := lakeRows(t, lake, true)
	t.Logf("before: victim rows events %d sessions %d failed %d", before[archive.TableEvents][victim],
		before[archive.TableSessions][victim], before[archive.TableFailed][victim])
	n.stop(t)

	// The node that applies the deletion dies right after rewriting its
	// first object (kill -9 at that instant), before the manifest.
	p := clickpipetest.StartWith(t, tags, dir, []string{"--config", cfg}, "CLICKPIPE_CRASHPOINT=erase-after-object")
	query := p.Find("ready", 30*time.Second)["query"].(string)
	// The erasure may start, and the crash point end the node, before the
	// POST is answered: the request names its id, and is sent again
	// (idempotent) after the restart.
	const id = "t12-lake-erase"
	request := `{"id":"` + id + `","type":"suppress_with_delete","user_ids":["` + victim + `"]}`
	if code, reg, err := adminTry(query, "POST", "/v1/regulations", request); err != nil {
		t.Logf("the node ended before answering the regulation (%v)", err)
	} else {
		require.Equal(t, http.StatusCreated, code, "%v", reg)
	}
	if code, ok := p.WaitExit(8 * time.Second); ok {
		require.Equal(t, 137, code)
		t.Log("stopped in the middle of the lake rewrite")
		mid := lakeRows(t, lake, true)
		for _, table := range archive.Tables() {
			for u, c := range before[table] {
				if u != victim && u != anon {
					require.Equal(t, c, mid[table][u], "%s rows of %s at the crash", table, u)
				}
			}
		}
	} else {
		t.Log("the node never reached the rewrite (no lake erasure in this build)")
		require.NoError(t, p.Cmd.Process.Kill())
		_, _ = p.Wait(30 * time.Second)
	}
	n = startT12(t, tags, dir, cfg)
	code, reg := admin(t, n.query, "POST", "/v1/regulations", request)
	require.Equal(t, http.StatusOK, code, "the regulation was stored before the crash: %v", reg)
	var r eraseReport
	// Wait for completion, or, once the serving state is done, at most 5 s
	// more for the lake (it takes about a second per table).
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !r.Completed {
		_, got := admin(t, n.query, "GET", "/v1/regulations/"+id, "")
		r.Completed = got["status"] == "completed"
		if st, _ := got["stores"].(map[string]any)["state"].(map[string]any); st["status"] == "done" {
			if soon := time.Now().Add(5 * time.Second); soon.Before(deadline) {
				deadline = soon
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	sc := exec.Command(mustBinary(t, tags), "archive", "status", "--config", cfg, "--json")
	sc.Env = append(os.Environ(), "CLICKPIPE_DATA_DIR="+dir, "CLICKPIPE_ARCHIVE_URL=file://"+lake)
	status, err := sc.Output()
	require.NoError(t, err)
	r.PendingShown = strings.Count(string(status), `"pendingErasures"`)
	n.stop(t)

	glob, manifest := lakeRows(t, lake, true), lakeRows(t, lake, false)
	r.Left = map[string]int{}
	for _, table := range archive.Tables() {
		r.Left[table] = glob[table][victim] + glob[table][anon]
		for u, c := range before[table] {
			if u != victim && u != anon && glob[table][u] != c {
				r.OthersChanged++
			}
		}
		for u, c := range glob[table] {
			if manifest[table][u] != c {
				r.Disagree++
			}
		}
	}
	if qdir, ok := duckdbDir(t); ok {
		for _, table := range archive.Tables() {
			for _, u := range []string{victim, anon} {
				if k := duckdbUserRows(t, qdir, lake, table, u); k > r.Left[table] {
					r.Left[table] = k
				}
			}
		}
	}
	t.Logf("erase report: %+v", r)
	for table, n := range r.Left {
		if n > 0 {
			logLeftRows(t, lake, table, victim, anon)
		}
	}
	return r
}

// logLeftRows names the files and rows of the deleted users still in a
// table, so that a failure says where they are.
func logLeftRows(t *testing.T, lake, table string, users ...string) {
	walk := func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rows, err := parquet.Read[lakeOwner](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Logf("left rows: %s: %v", p, err)
			return nil
		}
		for _, r := range rows {
			if slices.Contains(users, r.owner(table)) {
				t.Logf("left rows: %s: %+v", strings.TrimPrefix(p, lake), r)
			}
		}
		return nil
	}
	_ = filepath.WalkDir(filepath.Join(lake, table), walk)
	_ = filepath.WalkDir(filepath.Join(lake, "_staging", table), walk)
}

func mustBinary(t *testing.T, tags string) string {
	bin, err := clickpipetest.BinaryWithTags(tags)
	require.NoError(t, err)
	return bin
}

func TestT12DeleteFromLakeThroughCrash(t *testing.T) {
	r := eraseFromLake(t, "clickpipe_crashpoints")
	require.True(t, r.Completed, "the regulation did not complete after the restart")
	for _, n := range r.Left {
		require.Zero(t, n, "rows of the deleted users left, per table: %v", r.Left)
	}
	require.Zero(t, r.OthersChanged, "other users' rows changed")
	require.Zero(t, r.Disagree, "glob and manifest reads disagree")
	require.Zero(t, r.PendingShown, "archive status still shows the erasure pending")
}

// Negative control: a build that leaves the lake out of deletions.
func TestT12CheckerCatchesSkippedLakeRewrite(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	r := eraseFromLake(t, "clickpipe_crashpoints,clickpipe_broken_skip_lake_erasure")
	left := 0
	for _, n := range r.Left {
		left += n
	}
	require.Positive(t, left, "the lake checker did not notice the deleted user's rows")
}

// A plain delete (no suppression) removes what was collected before the
// request from the serving state and every lake table, and keeps
// collecting: events sent after it are stored and served.
func TestT12PlainDeleteKeepsCollecting(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	dir, cfg := t.TempDir(), regulationConfig(t)
	lake := filepath.Join(dir, "lake")
	n := startT12(t, "", dir, cfg)
	const user = "t12-plain"
	base := time.Now().UTC().Add(-2 * time.Hour)
	send(t, n.ingest, history(user, false, "plain-old", base, 8))
	appliedEventually(t, n.query, user, 8)
	clickpipetest.Eventually(t, 20*time.Second, func() bool {
		return lakeRows(t, lake, false)[archive.TableEvents][user] == 8
	}, "the old history in the lake")

	code, reg := admin(t, n.query, "POST", "/v1/regulations", `{"type":"delete","user_ids":["`+user+`"]}`)
	require.Equal(t, http.StatusCreated, code, "%v", reg)
	id := reg["id"].(string)
	clickpipetest.Eventually(t, 20*time.Second, func() bool {
		_, got := admin(t, n.query, "GET", "/v1/regulations/"+id, "")
		return got["status"] == "completed"
	}, "regulation %s completed", id)
	require.Equal(t, 0, appliedPerUser(t, n.query, token, []string{user})[user])

	time.Sleep(50 * time.Millisecond) // received strictly after the request
	send(t, n.ingest, history(user, false, "plain-new", time.Now().UTC().Add(-time.Minute), 3))
	appliedEventually(t, n.query, user, 3)
	clickpipetest.Eventually(t, 20*time.Second, func() bool {
		return lakeRows(t, lake, false)[archive.TableEvents][user] == 3
	}, "the new events in the lake")
	n.stop(t)
	glob := lakeRows(t, lake, true)
	require.Equal(t, 3, glob[archive.TableEvents][user], "glob read: only the events sent after the delete")
}
