package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/config"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/datadir"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/state"
)

var rebuildQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func rebuildConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load("")
	require.NoError(t, err)
	cfg.DataDir = t.TempDir()
	cfg.Log.Level = "error"
	cfg.Buffer.Partitions = 4
	cfg.Buffer.MaxBytes = 256 << 20
	cfg.Buffer.FailedMaxBytes = 16 << 20
	cfg.Process.IdleTimeout = time.Hour // event-time watermarks only: the result depends on the stream alone
	require.NoError(t, cfg.Validate())
	return cfg
}

// viewings are two visits per user, the first closed by the second.
func viewings(users ...string) []event.Event {
	t0 := time.Now().Add(-6 * time.Hour).UTC().Truncate(time.Second)
	var out []event.Event
	for _, u := range users {
		n := 0
		add := func(at time.Duration, typ, name, props string) {
			n++
			e := event.Event{MessageID: fmt.Sprintf("%s-%d", u, n), Source: "web", Type: typ, UserID: u,
				Timestamp: t0.Add(at), ReceivedAt: t0.Add(at)}
			if typ == event.TypeTrack {
				e.Event = name
			} else {
				e.Name = name
			}
			if props != "" {
				e.Properties = json.RawMessage(props)
			}
			out = append(out, e)
		}
		play := func(pos int) string {
			return fmt.Sprintf(`{"content_asset_id":"ep1","program":"Dark","season":"1","episode":"1","total_length":3000,"position":%d}`, pos)
		}
		add(0, event.TypePage, "home", "")
		add(10*time.Second, event.TypeTrack, "Search Performed", `{"query":"dark"}`)
		add(30*time.Second, event.TypeTrack, "Video Playback Started", play(0))
		for i := 1; i <= 20; i++ {
			add(30*time.Second+time.Duration(i)*10*time.Second, event.TypeTrack, "Video Content Playing", play(10*i))
		}
		add(240*time.Second, event.TypeTrack, "Video Playback Exited", play(210))
		add(2*time.Hour, event.TypePage, "home", "")
	}
	return out
}

// buildState runs the sessionizer as serve does, then returns the API's
// answers.
func buildState(t *testing.T, cfg *config.Config, evs []event.Event) map[string]any {
	t.Helper()
	ctx := context.Background()
	buf, err := buffer.New(cfg.Buffer, buffer.StoreDir(cfg.DataDir), rebuildQuiet, nil)
	require.NoError(t, err)
	require.NoError(t, buf.Open(ctx))
	defer buf.Close()
	for i := range evs {
		var enc event.Encoder
		require.NoError(t, enc.Append(&evs[i]))
		_, err := buf.Publish(ctx, event.Partition(evs[i].UserKey(), cfg.Buffer.Partitions), enc.Bytes(), nil)
		require.NoError(t, err)
	}
	r := &rebuilder{cfg: cfg, buf: buf}
	targets, err := r.partitionTargets(ctx)
	require.NoError(t, err)
	st, err := state.Open(cfg.Serve.StoreOptions(), filepath.Join(cfg.DataDir, "state"), rebuildQuiet, nil)
	require.NoError(t, err)
	defer st.Close()
	proc, err := process.New(processConfig(cfg), process.Deps{Store: st, Consumers: eventsConsumers{buf: buf, prefix: "process-"}, Sessions: buf,
		Partitions: cfg.Buffer.Partitions}, rebuildQuiet, nil)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- proc.Run(ctx) }()
	require.Eventually(t, func() bool { ok, err := caughtUp(st, targets); return err == nil && ok }, 20*time.Second, 20*time.Millisecond)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, proc.Shutdown(sctx))
	require.NoError(t, <-errc)
	return answers(t, st)
}

func answers(t *testing.T, st *state.Store) map[string]any {
	t.Helper()
	live, err := state.LoadLive(st, 4)
	require.NoError(t, err)
	api, err := serve.NewAPI(st, live, serve.DefaultConfig(), rebuildQuiet, nil)
	require.NoError(t, err)
	out := map[string]any{}
	paths := []string{"/v1/paths/top", "/v1/titles/ep1/stats"}
	for _, u := range []string{"u1", "u2", "u3"} {
		paths = append(paths, "/v1/users/"+u+"/continue-watching", "/v1/users/"+u+"/sessions", "/v1/users/"+u+"/profile")
	}
	for _, p := range paths {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		require.Equal(t, http.StatusOK, rec.Code, p)
		var v map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v))
		delete(v, "lag_seconds")
		delete(v, "as_of")
		delete(v, "days_since_last_session") // relative to now
		delete(v, "days_since_last_play")
		delete(v, "minute") // title stats: the current minute
		out[p] = v
	}
	return out
}

func TestRebuildRederivesStateAndSwapsIt(t *testing.T) {
	cfg := rebuildConfig(t)
	before := buildState(t, cfg, viewings("u1", "u2", "u3"))
	cw := before["/v1/users/u1/continue-watching"].(map[string]any)["items"].([]any)
	require.Len(t, cw, 1, "the state is not trivial")

	// Lose u1's state, as a logic bug would have: rebuild must re-derive it.
	live := filepath.Join(cfg.DataDir, "state")
	st, err := state.Open(state.DefaultOptions(), live, rebuildQuiet, nil)
	require.NoError(t, err)
	require.NoError(t, st.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: state.UserPrefix(event.Partition("u1", cfg.Buffer.Partitions), "u1")})
		var keys [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NotEqual(t, before, answers(t, st))
	require.NoError(t, st.Close())

	var stdout, stderr bytes.Buffer
	require.NoError(t, runRebuild(context.Background(), cfg, &stdout, &stderr))
	require.Contains(t, stdout.String(), "rebuilt the serving state from 75 messages")
	require.Contains(t, stderr.String(), "rebuild: 75/75 messages")

	olds, err := filepath.Glob(filepath.Join(cfg.DataDir, "state.old-*"))
	require.NoError(t, err)
	require.Len(t, olds, 1, "the previous state is kept")
	require.NoDirExists(t, filepath.Join(cfg.DataDir, "state.rebuild"))
	st, err = state.Open(state.DefaultOptions(), live, rebuildQuiet, nil)
	require.NoError(t, err)
	defer st.Close()
	require.Equal(t, before, answers(t, st))
	old, err := state.Open(state.DefaultOptions(), olds[0], rebuildQuiet, nil)
	require.NoError(t, err)
	defer old.Close()
	require.NotEqual(t, before, answers(t, old), "the tampered state is the one moved aside")
}

func TestRebuildRefusesWhileServeRuns(t *testing.T) {
	cfg := rebuildConfig(t)
	held, err := datadir.Open(cfg.DataDir)
	require.NoError(t, err)
	defer held.Close()
	err = runRebuild(context.Background(), cfg, io.Discard, io.Discard)
	require.ErrorIs(t, err, datadir.ErrLocked)
	require.ErrorContains(t, err, "stop clickpipe serve first")
	_, statErr := os.Stat(filepath.Join(cfg.DataDir, "state.rebuild"))
	require.True(t, os.IsNotExist(statErr), "nothing touched")
}
