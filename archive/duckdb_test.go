package archive_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
)

// duckdbSummary is what test/duckdb/query.mjs prints for a table.
type duckdbSummary struct {
	Files              int               `json:"files"`
	Rows               int64             `json:"rows"`
	DistinctIDs        int64             `json:"distinct_ids"`
	Partitions         int64             `json:"partitions"`
	RowsInOwnPartition int64             `json:"rows_in_own_partition"`
	SumPositionS       float64           `json:"sum_position_s"`
	WithAsset          int64             `json:"with_asset"`
	AssetMatches       int64             `json:"asset_matches"`
	MinTS              string            `json:"min_ts"`
	MaxTS              string            `json:"max_ts"`
	Types              map[string]string `json:"types"`
}

// duckdbDir is test/duckdb with its node_modules installed by
// scripts/install-duckdb.sh. Without it the caller skips, unless
// CLICKPIPE_DUCKDB=1 requires it.
func duckdbDir(t testing.TB) (string, bool) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "test", "duckdb")
	_, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api", "package.json"))
	_, nodeErr := exec.LookPath("node")
	if err == nil && nodeErr == nil {
		return dir, true
	}
	if os.Getenv("CLICKPIPE_DUCKDB") == "1" {
		t.Fatalf("CLICKPIPE_DUCKDB=1 but DuckDB is not usable (run scripts/install-duckdb.sh): %v %v", err, nodeErr)
	}
	return "", false
}

// duckdbQuery summarises table with DuckDB: from the manifests, or with
// glob set the way most users read a lake, read_parquet('<table>/**/*.parquet').
func duckdbQuery(t testing.TB, qdir, lake, table string, glob bool) duckdbSummary {
	t.Helper()
	args := []string{"query.mjs", lake, table}
	if glob {
		args = append(args, "--glob")
	}
	cmd := exec.Command("node", args...)
	cmd.Dir = qdir
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		t.Fatalf("duckdb query: %v\n%s", err, ee.Stderr)
	}
	require.NoError(t, err)
	var s duckdbSummary
	require.NoError(t, json.Unmarshal(out, &s), string(out))
	return s
}

// TestDuckDBReadsLake: an independent engine reads the lake a run wrote,
// including a crashed attempt's staged objects and duplicate sends, and
// sees every event exactly once in the right partition with typed columns,
// through the manifests and through a plain glob of the table's prefix.
func TestDuckDBReadsLake(t *testing.T) {
	qdir, ok := duckdbDir(t)
	if !ok {
		t.Skip("DuckDB not installed: run scripts/install-duckdb.sh (CLICKPIPE_DUCKDB=1 requires it)")
	}
	b := buffertest.New(t, buffertest.Config(), "")
	lake := t.TempDir()
	dir, err := archive.OpenDir(lake)
	require.NoError(t, err)
	sent := sendEvents(900)
	publishEvents(t, b, sent, 30)
	publishEvents(t, b, sent[100:200], 30) // re-sent by an SDK retry: deduplicated
	dedup := newMemDedup(b)

	// A first run crashes after writing objects but before any manifest.
	st := &faultStore{ObjectStore: dir, failPut: func(key string) error {
		if isManifest(key) {
			return errStoreDown
		}
		return nil
	}}
	cfg := testConfig()
	r := start(t, cfg, b, st, dedup)
	eventually(t, 10*time.Second, func() bool {
		keys, _ := dir.List(t.Context(), archive.StagingPrefix+"events/")
		return len(keys) > 0
	}, "no object written")
	r.kill()
	r = start(t, cfg, b, dir, dedup)
	eventually(t, 20*time.Second, func() bool { return committedRows(t, dir, archive.TableEvents) == 900 }, "lake incomplete")
	r.shutdown(t)

	glob := duckdbQuery(t, qdir, lake, archive.TableEvents, true)
	require.Equal(t, int64(900), glob.Rows, "glob reader")
	require.Equal(t, int64(900), glob.DistinctIDs, "glob reader")
	s := duckdbQuery(t, qdir, lake, archive.TableEvents, false)
	require.Equal(t, int64(900), s.Rows)
	require.Equal(t, int64(900), s.DistinctIDs)
	require.Equal(t, int64(900), s.RowsInOwnPartition)
	require.Equal(t, int64(3), s.Partitions) // 17h, 18h, 19h
	require.Equal(t, int64(900), s.WithAsset)
	require.Equal(t, int64(900), s.AssetMatches)
	var sum float64
	for i := range 900 {
		sum += float64(i) + 0.5
	}
	require.InDelta(t, sum, s.SumPositionS, 1e-6)
	require.Equal(t, "2026-11-25 17:30:00+00", s.MinTS)
	require.Equal(t, map[string]string{"timestamp": "TIMESTAMP WITH TIME ZONE", "sent_at": "TIMESTAMP WITH TIME ZONE",
		"position_s": "DOUBLE", "bot": "BOOLEAN", "stream_seq": "BIGINT"}, s.Types)
}

var errStoreDown = os.ErrDeadlineExceeded
