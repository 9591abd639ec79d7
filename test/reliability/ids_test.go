package reliability

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// readStream opens a stopped node's buffer and calls each for every line
// of every message of stream.
func readStream(dataDir, stream string, each func(seq uint64, line []byte) error) error {
	cfg := buffer.DefaultConfig()
	cfg.Partitions = partitions
	cfg.MaxBytes = 256 << 20
	b, err := buffer.New(cfg, buffer.StoreDir(dataDir), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := b.Open(ctx); err != nil {
		return err
	}
	defer b.Close()
	st, err := b.State(ctx, stream)
	if err != nil || st.Messages == 0 {
		return err
	}
	c, err := b.ConsumerFrom(ctx, buffer.ConsumerSpec{Stream: stream, Name: "reliability-reader", StartSeq: st.FirstSeq})
	if err != nil {
		return err
	}
	for seen := uint64(0); seen < st.Messages; {
		msgs, err := c.Fetch(ctx, 1000, time.Second)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return fmt.Errorf("%s reports %d messages, read %d", stream, st.Messages, seen)
		}
		for _, m := range msgs {
			seen++
			if err := event.Lines(m.Data, func(_ int, line []byte) error { return each(m.Seq, line) }); err != nil {
				return err
			}
			if err := m.Ack(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// failedReasons maps the messageId of every FAILED-stream item to its
// reason.
func failedReasons(dataDir string) (map[string]string, error) {
	out := map[string]string{}
	err := readStream(dataDir, buffer.FailedStream, func(_ uint64, line []byte) error {
		var f event.Failed
		if err := json.Unmarshal(line, &f); err != nil {
			return err
		}
		out[f.MessageID] = f.Reason
		return nil
	})
	return out, err
}

// hostileIDItems are items whose ids or names must never reach a
// serving-state key, keyed by their (valid) messageId.
func hostileIDItems() map[string]string {
	long := strings.Repeat("u", 70000)
	return map[string]string{
		"id-nul-user":    `{"type":"track","event":"Video Playback Started","userId":"victim\u0000s","properties":{"asset_id":"t1","position":0}}`,
		"id-nul-anon":    `{"type":"page","anonymousId":"victim\u0000x"}`,
		"id-ctrl-event":  `{"type":"track","event":"Play\nback","userId":"victim"}`,
		"id-nul-screen":  `{"type":"screen","name":"Home\u0000","userId":"victim"}`,
		"id-nul-asset":   `{"type":"track","event":"Video Playback Started","userId":"victim","properties":{"asset_id":"t1\u0000x","position":0}}`,
		"id-long-user":   `{"type":"track","event":"E","userId":"` + strings.Repeat("u", 257) + `"}`,
		"id-huge-user":   `{"type":"track","event":"E","userId":"` + long[:30000] + `"}`,
		"id-long-series": `{"type":"track","event":"E","userId":"victim","properties":{"series_id":"` + strings.Repeat("s", 300) + `"}}`,
	}
}

// idProblems sends one batch of a valid event and the hostile items to a
// running node, stops it, and lists every way the outcome differs from
// the promise: 200 for the batch, the valid event stored, every hostile item
// absent from EVENTS and present in FAILED with reason invalid_id.
func idProblems(t *testing.T, p *clickpipetest.Proc, dir, addr string) []string {
	items := hostileIDItems()
	parts := []string{`{"type":"track","event":"E","userId":"victim","messageId":"id-valid"}`}
	for id, it := range items {
		parts = append(parts, strings.Replace(it, "{", `{"messageId":"`+id+`",`, 1))
	}
	body := []byte(`{"batch":[` + strings.Join(parts, ",") + `]}`)
	var bad []string
	if code, answer := postBatchAnswer(t, addr, keyWeb, body); code != http.StatusOK {
		bad = append(bad, fmt.Sprintf("batch answered %d, want 200: %s", code, answer))
	}
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
	stored, err := streamIDs(dir, partitions)
	require.NoError(t, err)
	failed, err := failedReasons(dir)
	require.NoError(t, err)
	if stored["id-valid"] != 1 {
		bad = append(bad, "the valid event of the batch is not in EVENTS")
	}
	for id := range items {
		if stored[id] > 0 {
			bad = append(bad, id+": stored in EVENTS")
		}
		if failed[id] != event.ReasonInvalidID {
			bad = append(bad, fmt.Sprintf("%s: failed reason %q, want %q", id, failed[id], event.ReasonInvalidID))
		}
	}
	return bad
}

func idNode(t *testing.T, tags string) (*clickpipetest.Proc, string, string) {
	dir := t.TempDir()
	p := clickpipetest.StartWith(t, tags, dir, []string{"--config", twoSourceConfig(t)},
		"CLICKPIPE_INGEST_MAX_EVENT_BYTES=60000")
	return p, dir, p.Find("ready", 30*time.Second)["ingest"].(string)
}

// Ids and names with control characters or past their caps are refused at
// ingest (failed stream, reason invalid_id) while the rest of their batch
// is stored and answered 200.
func TestIDsRefusedAtIngest(t *testing.T) {
	p, dir, addr := idNode(t, "")
	bad := idProblems(t, p, dir, addr)
	require.Empty(t, bad)
}

// Negative control: a build whose ingest accepts any id fails the checker.
func TestIDsCheckerCatchesAcceptAnyID(t *testing.T) {
	p, dir, addr := idNode(t, "clickpipe_broken_accept_any_id")
	bad := idProblems(t, p, dir, addr)
	t.Logf("broken build: %q", bad)
	require.NotEmpty(t, bad, "the invalid_id checker did not notice a build that accepts any id")
}

// A max_event_bytes that would let an id exceed Badger's key limit is a
// configuration error, not a stalled partition at run time.
func TestMaxEventBytesBoundedByKeyLimit(t *testing.T) {
	bin, err := clickpipetest.Binary()
	require.NoError(t, err)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("ingest:\n  max_event_bytes: 100KiB\n  max_batch_bytes: 1MiB\n  commit_max_bytes: 4MiB\n"), 0o600))
	out, err := runBinary(bin, "check", "--config", cfg)
	require.Error(t, err)
	require.Contains(t, out, "ingest.max_event_bytes")
}

// runBinary runs bin with args and returns its combined output.
func runBinary(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// postBatchAnswer is postBatch returning the answer's body too.
func postBatchAnswer(t *testing.T, addr, key string, body []byte) (int, string) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/batch", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(key+":")))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
