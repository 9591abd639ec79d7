package reliability

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// failedLakeRows reads the committed failed table of a node's local lake.
func failedLakeRows(dataDir string) ([]archive.FailedRow, error) {
	st, err := archive.OpenDir(filepath.Join(dataDir, "lake"))
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	objs, err := archive.CommittedObjects(ctx, st, archive.TableFailed)
	if err != nil {
		return nil, err
	}
	var out []archive.FailedRow
	for _, o := range objs {
		data, err := st.Get(ctx, o.Key)
		if err != nil {
			return nil, err
		}
		rows, err := parquet.Read[archive.FailedRow](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

// poisonProblems publishes poison straight to an events partition (past
// ingest: a line that is not JSON and an event whose messageId cannot be a
// key), then valid events behind it, and lists what differs from the
// promise within wait: each poison item in the committed failed table with
// its reason and EVENTS position, the valid events in the events table (the
// table moved on), and no payload byte of the poison in the log.
func poisonProblems(t *testing.T, p *clickpipetest.Proc, dir, natsAddr, ingestAddr string, wait time.Duration) []string {
	nc, err := nats.Connect("nats://" + natsAddr)
	require.NoError(t, err)
	defer nc.Close()
	js, err := nc.JetStream()
	require.NoError(t, err)
	const secret = "SECRET-PAYLOAD-7f3a"
	hugeID := strings.Repeat("m", 5000)
	poison := "this is not json " + secret + "\n" +
		`{"messageId":"` + hugeID + `","source":"web","type":"track","event":"E","userId":"poison-user","timestamp":"2026-01-01T00:00:00Z","receivedAt":"2026-01-01T00:00:00Z","originalTimestamp":"2026-01-01T00:00:00Z"}`
	ack, err := js.Publish(buffer.Subject(event.Partition("poison-user", partitions)), []byte(poison))
	require.NoError(t, err)

	ids, body := batch(0, 1, 10)
	body = []byte(strings.ReplaceAll(string(body), "user-0-1", "poison-user"))
	code, answer := postBatchAnswer(t, ingestAddr, keyWeb, body)
	require.Equal(t, http.StatusOK, code, answer)

	want := map[uint32]string{0: event.ReasonUndecodable, 1: event.ReasonInvalidID}
	var bad []string
	deadline := time.Now().Add(wait)
	for {
		bad = bad[:0]
		// The node commits while this reads: a read that meets a commit
		// in progress is made again, and a read error that lasts to the
		// deadline fails the test (it never counts as a finding).
		rows, err := failedLakeRows(dir)
		lake, lerr := lakeIDs(dir)
		if (err != nil || lerr != nil) && time.Now().Before(deadline) {
			t.Logf("reading the lake: %v %v; again", err, lerr)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		require.NoError(t, err)
		require.NoError(t, lerr)
		found := map[uint32]string{}
		for _, r := range rows {
			if r.OriginStream == buffer.EventsStream && uint64(r.OriginSeq) == ack.Sequence {
				found[uint32(r.OriginIndex)] = r.Reason
			}
		}
		for idx, reason := range want {
			if found[idx] != reason {
				bad = append(bad, fmt.Sprintf("EVENTS seq %d index %d: failed table reason %q, want %q", ack.Sequence, idx, found[idx], reason))
			}
		}
		for _, id := range ids {
			if lake["web/"+id] != 1 {
				bad = append(bad, fmt.Sprintf("%s: %d copies in the events table, want 1", id, lake["web/"+id]))
			}
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, l := range p.Lines() {
		if s := fmt.Sprint(l); strings.Contains(s, secret) || strings.Contains(s, hugeID[:100]) {
			bad = append(bad, "a log line holds poison payload bytes: "+fmt.Sprint(l["msg"]))
			break
		}
	}
	return bad
}

func poisonNode(t *testing.T, tags string, env ...string) (*clickpipetest.Proc, string, string, map[string]any) {
	dir := t.TempDir()
	natsAddr := freePort(t)
	env = append(env, "CLICKPIPE_BUFFER_LISTEN="+natsAddr)
	p := clickpipetest.StartWith(t, tags, dir, []string{"--config", twoSourceConfig(t)}, env...)
	return p, dir, natsAddr, p.Find("ready", 30*time.Second)
}

// T9 (archive side): poison in the events stream lands in the failed table
// with its reason and stream position, and the events table moves on.
func TestArchivePoisonToFailedTable(t *testing.T) {
	p, dir, natsAddr, ready := poisonNode(t, "")
	bad := poisonProblems(t, p, dir, natsAddr, ready["ingest"].(string), 30*time.Second)
	require.Empty(t, bad)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
}

// Negative control: an archive given no failed sink (poison only counted
// and logged, the behaviour before issue 12) fails the checker.
func TestArchivePoisonCheckerCatchesDroppedPoison(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	p, dir, natsAddr, ready := poisonNode(t, "clickpipe_broken_poison_dropped")
	bad := poisonProblems(t, p, dir, natsAddr, ready["ingest"].(string), 8*time.Second)
	t.Logf("broken build: %q", bad)
	require.NotEmpty(t, bad, "the poison checker did not notice poison left out of the lake")
}

// stallProblems breaks the local lake's events table (a file where its
// directory must go, so every upload fails and is retried) under a little
// traffic, and reports whether /readyz turned false naming the table
// within wait.
func stallProblems(t *testing.T, dir string, ready map[string]any, wait time.Duration) []string {
	lakeEvents := filepath.Join(dir, "lake", "events")
	require.NoError(t, os.RemoveAll(lakeEvents))
	require.NoError(t, os.MkdirAll(filepath.Dir(lakeEvents), 0o755))
	require.NoError(t, os.WriteFile(lakeEvents, []byte("not a directory"), 0o644))
	_, body := batch(0, 2, 5)
	code, answer := postBatchAnswer(t, ready["ingest"].(string), keyWeb, body)
	require.Equal(t, http.StatusOK, code, answer)
	deadline := time.Now().Add(wait)
	for {
		code, answer := clickpipetest.Get(t, "http://"+ready["query"].(string)+"/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(answer, "archive table events has not advanced") {
			return nil
		}
		if time.Now().After(deadline) {
			return []string{fmt.Sprintf("readyz %d %s: does not name the stalled events table", code, answer)}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A table that cannot commit for archive.stall_after turns /readyz false
// with its name.
func TestArchiveStallTurnsReadyzFalse(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	p, dir, _, ready := poisonNode(t, "", "CLICKPIPE_ARCHIVE_STALL_AFTER=3s", "CLICKPIPE_ARCHIVE_RETRY_MAX=1s")
	require.Empty(t, stallProblems(t, dir, ready, 20*time.Second))
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGKILL))
}

// Negative control: with the stall check off the checker fails.
func TestArchiveStallCheckerCatchesNoStallCheck(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	p, dir, _, ready := poisonNode(t, "", "CLICKPIPE_ARCHIVE_STALL_AFTER=0s", "CLICKPIPE_ARCHIVE_RETRY_MAX=1s")
	bad := stallProblems(t, dir, ready, 8*time.Second)
	t.Logf("stall check off: %q", bad)
	require.NotEmpty(t, bad)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGKILL))
}

// unreachableStoreProblems reports whether /readyz names the events table
// within wait while the object store refuses connections from start-up.
func unreachableStoreProblems(t *testing.T, stallAfter string, wait time.Duration) []string {
	_, _, _, ready := poisonNode(t, "", "CLICKPIPE_ARCHIVE_STALL_AFTER="+stallAfter,
		"CLICKPIPE_ARCHIVE_URL=s3://lake/cp", "CLICKPIPE_ARCHIVE_S3_ENDPOINT="+freePort(t),
		"CLICKPIPE_ARCHIVE_S3_SECURE=false", "CLICKPIPE_ARCHIVE_S3_PATH_STYLE=true",
		"CLICKPIPE_ARCHIVE_S3_ACCESS_KEY=k", "CLICKPIPE_ARCHIVE_S3_SECRET_KEY=s",
		"CLICKPIPE_ARCHIVE_S3_TIMEOUT=1s", "CLICKPIPE_ARCHIVE_RETRY_MAX=1s")
	deadline := time.Now().Add(wait)
	for {
		code, answer := clickpipetest.Get(t, "http://"+ready["query"].(string)+"/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(answer, "archive table events has not started") {
			return nil
		}
		if time.Now().After(deadline) {
			return []string{fmt.Sprintf("readyz %d %s: does not name the events table", code, answer)}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A table that cannot even start (object store unreachable since
// start-up) turns /readyz false after archive.stall_after too.
func TestArchiveUnreachableAtStartTurnsReadyzFalse(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	require.Empty(t, unreachableStoreProblems(t, "3s", 20*time.Second))
}

// Negative control: with the stall check off the checker fails.
func TestArchiveUnreachableCheckerCatchesNoStallCheck(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	bad := unreachableStoreProblems(t, "0s", 8*time.Second)
	t.Logf("stall check off: %q", bad)
	require.NotEmpty(t, bad)
}
