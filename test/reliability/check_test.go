package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
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

// Tests that mostly wait (a SIGSTOP past the ack wait, a stall check's
// deadline, a negative control that waits out its checker, slow clients'
// timeouts) call t.Parallel: Go runs them after the others, side by side
// (scripts/test-all passes -parallel 4), which takes about two minutes
// off CI. They spend under a third of their time on the CPU (measured per
// test with /usr/bin/time: user+sys against elapsed), so they barely slow
// each other; the load, kill and fsync tests stay sequential.

// report is the checker's verdict, printed as JSON by every test.
type report struct {
	Test       string `json:"test"`
	Cycles     int    `json:"cycles,omitempty"`
	Sent       int    `json:"sent"`
	Acked      int    `json:"acked"`
	InStream   int    `json:"in_stream"`
	Lost       int    `json:"lost"`
	Unexpected int    `json:"unexpected"`
	// StreamCopies counts ids stored more than once in the buffer (an
	// unknown outcome answered 503 and retried); downstream dedup absorbs
	// them, so they are reported, not failed.
	StreamCopies int `json:"stream_copies"`
	DupApplied   int `json:"dup_applied"`
	// MissingApplied counts stream events absent from serving state.
	MissingApplied int `json:"missing_applied"`
	DupArchive     int `json:"dup_archive"`
	// MissingArchive counts stream events absent from the committed lake;
	// UnexpectedArchive lake rows that are not in the stream.
	MissingArchive    int `json:"missing_archive"`
	UnexpectedArchive int `json:"unexpected_archive"`
	// Dropped counts requests cut off without an answer.
	Dropped    int      `json:"dropped"`
	LostSample []string `json:"lost_sample,omitempty"`
}

func (r report) log(t *testing.T) {
	b, _ := json.Marshal(r)
	t.Logf("reliability report: %s", b)
	if dir := os.Getenv("CLICKPIPE_RELIABILITY_REPORTS"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, r.Test+".json"), b, 0o644)
	}
}

// streamIDs opens a stopped node's buffer and counts every messageId in
// the EVENTS stream.
func streamIDs(dataDir string, partitions int) (map[string]int, error) {
	ids, _, err := streamContents(dataDir, partitions)
	return ids, err
}

// streamEnds returns the last stream sequence of every partition subject
// and of the whole stream.
func streamEnds(dataDir string, partitions int) (map[int]uint64, uint64, error) {
	_, ends, err := scanStream(dataDir, partitions, func(*event.Event) {})
	var last uint64
	for _, s := range ends {
		last = max(last, s)
	}
	return ends, last, err
}

// streamContents also returns, per user key, the distinct messageIds.
func streamContents(dataDir string, partitions int) (map[string]int, map[string]map[string]bool, error) {
	users := map[string]map[string]bool{}
	ids, _, err := scanStream(dataDir, partitions, func(e *event.Event) {
		if users[e.UserKey()] == nil {
			users[e.UserKey()] = map[string]bool{}
		}
		users[e.UserKey()][e.MessageID] = true
	})
	return ids, users, err
}

func scanStream(dataDir string, partitions int, each func(*event.Event)) (map[string]int, map[int]uint64, error) {
	cfg := buffer.DefaultConfig()
	cfg.Partitions = partitions
	cfg.MaxBytes = 256 << 20
	b, err := buffer.New(cfg, buffer.StoreDir(dataDir), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		return nil, nil, err
	}
	ctx := context.Background()
	if err := b.Open(ctx); err != nil {
		return nil, nil, err
	}
	defer b.Close()
	st, err := b.State(ctx, buffer.EventsStream)
	if err != nil {
		return nil, nil, err
	}
	ids := map[string]int{}
	ends := map[int]uint64{}
	if st.Messages == 0 {
		return ids, ends, nil
	}
	c, err := b.ConsumerFrom(ctx, buffer.ConsumerSpec{Stream: buffer.EventsStream, Name: "reliability-checker", StartSeq: st.FirstSeq})
	if err != nil {
		return nil, nil, err
	}
	for seen := uint64(0); seen < st.Messages; {
		msgs, err := c.Fetch(ctx, 1000, time.Second)
		if err != nil {
			return nil, nil, err
		}
		if len(msgs) == 0 {
			return nil, nil, fmt.Errorf("stream reports %d messages, read %d", st.Messages, seen)
		}
		for _, m := range msgs {
			seen++
			ends[m.Partition] = max(ends[m.Partition], m.Seq)
			evs, err := event.Decode(m.Data)
			if err != nil {
				return nil, nil, fmt.Errorf("decoding seq %d: %w", m.Seq, err)
			}
			for i := range evs {
				ids[evs[i].MessageID]++
				each(&evs[i])
			}
			if err := m.Ack(ctx); err != nil {
				return nil, nil, err
			}
		}
	}
	return ids, ends, nil
}

// compare fills the loss and provenance counts of r.
func compare(r *report, sent, acked map[string]bool, stored map[string]int) {
	r.Sent, r.Acked, r.InStream = len(sent), len(acked), len(stored)
	for id := range acked {
		if stored[id] == 0 {
			r.Lost++
			if len(r.LostSample) < 10 {
				r.LostSample = append(r.LostSample, id)
			}
		}
	}
	for id, n := range stored {
		if !sent[id] {
			r.Unexpected++
		}
		if n > 1 {
			r.StreamCopies++
		}
	}
}

// appliedPerUser asks a running node's query API how many events each
// user's sessions hold.
func appliedPerUser(t *testing.T, queryAddr, token string, users []string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, u := range users {
		req, _ := http.NewRequest(http.MethodGet, "http://"+queryAddr+"/v1/users/"+u+"/sessions?limit=200", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var body struct {
			Sessions []struct {
				Events int `json:"events"`
			} `json:"sessions"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		for _, s := range body.Sessions {
			out[u] += s.Events
		}
	}
	return out
}

// compareApplied fills DupApplied and MissingApplied: per user, the
// serving state must hold each distinct event of the stream exactly once.
func compareApplied(r *report, users map[string]map[string]bool, applied map[string]int) {
	for u, ids := range users {
		switch d := applied[u] - len(ids); {
		case d > 0:
			r.DupApplied += d
		case d < 0:
			r.MissingApplied -= d
		}
	}
}

// verifyStopped checks a gracefully stopped node's data dir against the
// driver: the stream first (lost, unexpected), then a restart that waits
// until the sessionizer and the archive have caught up with everything the
// stream holds (a graceful stop does not wait for that), then serving state
// and lake.
func verifyStopped(t *testing.T, name, tags, dir string, drv *driver) report {
	t.Helper()
	stored, users, err := streamContents(dir, partitions)
	require.NoError(t, err)
	ends, last, err := streamEnds(dir, partitions)
	require.NoError(t, err)
	sent, acked := drv.snapshot()
	r := report{Test: name}
	compare(&r, sent, acked, stored)

	p := clickpipetest.StartBinary(t, tags, dir)
	query := p.Find("ready", 30*time.Second)["query"].(string)
	clickpipetest.Eventually(t, 120*time.Second, func() bool {
		for part, seq := range ends {
			if metric(t, query, fmt.Sprintf(`clickpipe_process_checkpoint_seq{partition="%d"}`, part)) < float64(seq) {
				return false
			}
		}
		return metric(t, query, `clickpipe_archive_committed_sequence{table="events"}`) >= float64(last)
	}, "sessionizer and archive to catch up with the stream (last sequence %d)", last)
	tok, err := os.ReadFile(filepath.Join(dir, "dev-query-token"))
	require.NoError(t, err)
	userKeys := make([]string, 0, len(users))
	for u := range users {
		userKeys = append(userKeys, u)
	}
	compareApplied(&r, users, appliedPerUser(t, query, strings.TrimSpace(string(tok)), userKeys))
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
	lake, err := lakeIDs(dir)
	require.NoError(t, err)
	compareLake(&r, stored, lake, "dev")
	return r
}
