package reliability

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// fillFailed publishes filler items straight to the FAILED stream, ever
// smaller, until it refuses even a tiny one.
func fillFailed(t *testing.T, natsAddr string) {
	nc, err := nats.Connect("nats://" + natsAddr)
	require.NoError(t, err)
	defer nc.Close()
	js, err := nc.JetStream()
	require.NoError(t, err)
	for size := 60 << 10; size >= 1; size /= 4 {
		line := []byte(`{"reason":"filler","receivedAt":"2026-01-01T00:00:00Z","detail":"` + strings.Repeat("f", size) + `"}` + "\n")
		for i := 0; ; i++ {
			require.Less(t, i, 1000, "FAILED never filled up")
			if _, err := js.Publish(buffer.FailedSubject, line); err != nil {
				break
			}
		}
	}
}

// fullFailedProblems fills the FAILED stream, then sends a batch of one
// valid event and one invalid item, and lists what differs from the
// promise: a 200 (its valid event was stored), the dropped invalid item
// counted, FAILED's fullness on /readyz, and the valid event in EVENTS.
func fullFailedProblems(t *testing.T, p *clickpipetest.Proc, dir, natsAddr string, ready map[string]any) []string {
	fillFailed(t, natsAddr)
	query := ready["query"].(string)
	body := []byte(`{"batch":[{"type":"track","event":"E","userId":"side-user","messageId":"side-valid"},` +
		`{"type":"track","userId":"side-user","messageId":"side-invalid"}]}`)
	var bad []string
	if code, answer := postBatchAnswer(t, ready["ingest"].(string), keyWeb, body); code != http.StatusOK {
		bad = append(bad, fmt.Sprintf("batch answered %d (%s), want 200: its valid event was stored", code, strings.TrimSpace(answer)))
	}
	if n := metric(t, query, `clickpipe_ingest_events_total{outcome="invalid_dropped",reason=""}`); n < 1 {
		bad = append(bad, "the dropped invalid item is not counted")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, answer := clickpipetest.Get(t, "http://"+query+"/readyz")
		if strings.Contains(answer, "buffer stream FAILED") {
			break
		}
		if time.Now().After(deadline) {
			bad = append(bad, "readyz does not report the full FAILED stream: "+answer)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(p.All("invalid items dropped: the failed-events stream refused them")) == 0 {
		bad = append(bad, "the dropped invalid item is not logged")
	}
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
	stored, err := streamIDs(dir, partitions)
	require.NoError(t, err)
	if stored["side-valid"] != 1 {
		bad = append(bad, fmt.Sprintf("the valid event is %d times in EVENTS, want 1", stored["side-valid"]))
	}
	return bad
}

// A full FAILED stream costs only the invalid items: the batch is answered
// by its valid events.
func TestFullFailedStreamAnswersByValidEvents(t *testing.T) {
	p, dir, natsAddr, ready := poisonNode(t, "", "CLICKPIPE_BUFFER_FAILED_MAX_BYTES=1MiB")
	require.Empty(t, fullFailedProblems(t, p, dir, natsAddr, ready))
}

// Negative control: a build that fails the request when its invalid items
// cannot be stored (the behaviour before issue 12) fails the checker.
func TestFullFailedCheckerCatchesRequireFailedStored(t *testing.T) {
	p, dir, natsAddr, ready := poisonNode(t, "clickpipe_broken_require_failed_stored", "CLICKPIPE_BUFFER_FAILED_MAX_BYTES=1MiB")
	bad := fullFailedProblems(t, p, dir, natsAddr, ready)
	t.Logf("broken build: %q", bad)
	require.NotEmpty(t, bad)
}
