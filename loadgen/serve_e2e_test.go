package loadgen

import (
	"context"
	"log/slog"
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

// TestAgainstServeEveryAckedIDIsInTheStream runs loadgen briefly in
// verification mode against a real `clickpipe serve`, stops the server and
// reads its EVENTS stream back: every witnessed messageId must be there.
func TestAgainstServeEveryAckedIDIsInTheStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the clickpipe binary")
	}
	t.Cleanup(clickpipetest.RemoveBinary)
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	ready := p.Find("ready", 60*time.Second)
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(t, err)

	cfg := DefaultConfig()
	cfg.Target, cfg.WriteKey = "http://"+ready["ingest"].(string), strings.TrimSpace(string(key))
	cfg.Connections, cfg.MaxEvents, cfg.Duration = 8, 20_000, 5*time.Second
	cfg.Profile.Rate = 10_000
	cfg.Population.Users, cfg.Population.ActiveSessions = 5_000, 500
	cfg.Population.Start = time.Now()
	cfg.Witness = filepath.Join(t.TempDir(), "acked")
	r, err := New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	rep, err := r.Run(t.Context())
	require.NoError(t, err)
	require.Positive(t, rep.EventsAcked)
	require.Equal(t, rep.EventsSent, rep.EventsAcked, "status %v", rep.Status)

	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	code, _ := p.Wait(40 * time.Second)
	require.Equal(t, 0, code)

	stored := streamIDs(t, dir)
	raw, err := os.ReadFile(cfg.Witness)
	require.NoError(t, err)
	acked := strings.Fields(string(raw))
	require.Len(t, acked, int(rep.EventsAcked))
	missing := 0
	for _, id := range acked {
		if stored[id] == 0 {
			missing++
		}
	}
	require.Zero(t, missing, "acknowledged ids missing from the stream (of %d)", len(acked))
}

// streamIDs reads every event of a stopped node's EVENTS stream; the
// buffer settings must match those clickpipetest.Start gives the server.
func streamIDs(t *testing.T, dataDir string) map[string]int {
	cfg := buffer.DefaultConfig()
	cfg.Partitions, cfg.MaxBytes = 4, 256<<20
	b, err := buffer.New(cfg, buffer.StoreDir(dataDir), slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	require.NoError(t, b.Open(ctx))
	defer b.Close()
	st, err := b.State(ctx, buffer.EventsStream)
	require.NoError(t, err)
	ids := map[string]int{}
	for seq := st.FirstSeq; st.Messages > 0 && seq <= st.LastSeq; seq++ {
		m, err := b.GetMessage(ctx, buffer.EventsStream, seq)
		require.NoError(t, err, "seq %d", seq)
		evs, err := event.Decode(m.Data)
		require.NoError(t, err, "seq %d", seq)
		for _, e := range evs {
			ids[e.MessageID]++
		}
	}
	return ids
}
