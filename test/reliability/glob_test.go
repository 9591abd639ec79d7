package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// A lake that glob readers can trust (docs/format/lake.md, "Staging and
// publication"): at every instant, every Parquet file under a table's
// prefix is committed by a manifest, and no acknowledged event is in two of
// them, so read_parquet('<lake>/events/**/*.parquet') counts each once.
// The test stops the process (as kill -9 would) at each step of the flush
// and compaction protocols (build tag clickpipe_crashpoints), inspects the
// lake at that instant, restarts, and finally compares a glob read of the
// whole prefix with the stream.

// globView is what a glob reader of the lake sees at one instant.
type globView struct {
	// Uncommitted counts Parquet files under a table's prefix that no
	// manifest lists.
	Uncommitted int
	// Dup counts events rows beyond the first of one messageId.
	Dup int
	ids map[string]int
}

// inspectGlob reads every Parquet file under each table's prefix.
func inspectGlob(t *testing.T, lake string) globView {
	t.Helper()
	st, err := archive.OpenDir(lake)
	require.NoError(t, err)
	v := globView{ids: map[string]int{}}
	for _, table := range archive.Tables() {
		// Committed: listed by a manifest, a live one or one a compaction
		// has superseded but not yet removed with its objects.
		keys, err := st.List(context.Background(), archive.ManifestPrefix+table+"/")
		require.NoError(t, err)
		listed := map[string]bool{}
		for _, k := range keys {
			m, err := archive.ReadManifest(context.Background(), st, k)
			require.NoError(t, err)
			for _, o := range m.Objects {
				listed[o.Key] = true
			}
		}
		err = filepath.WalkDir(filepath.Join(lake, table), func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".parquet") {
				return err
			}
			rel, _ := filepath.Rel(lake, p)
			if !listed[filepath.ToSlash(rel)] {
				v.Uncommitted++
			}
			if table == archive.TableEvents {
				return countGlobIDs(p, v.ids)
			}
			return nil
		})
		if !errors.Is(err, fs.ErrNotExist) {
			require.NoError(t, err)
		}
	}
	for _, n := range v.ids {
		v.Dup += n - 1
	}
	return v
}

func countGlobIDs(path string, ids map[string]int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	rows, err := parquet.Read[lakeRow](bytes.NewReader(data), int64(len(data)))
	for _, r := range rows {
		ids[r.Source+"/"+r.MessageID]++
	}
	return err
}

// crashAt runs a node that ends itself at the named step, under load,
// and returns once it has.
func crashAt(t *testing.T, tags, dir, step string, drv *driver) {
	t.Helper()
	p := clickpipetest.StartBinary(t, tags, dir, "CLICKPIPE_CRASHPOINT="+step, "CLICKPIPE_CRASHPOINT_HIT=2")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) { // the backlog of the last crash may reach the step before ingest is ready
		if code, ok := p.WaitExit(50 * time.Millisecond); ok {
			require.Equal(t, 137, code, "the node did not stop at %s", step)
			return
		}
		if ready := p.All("ready"); len(ready) > 0 {
			drv.setAddr(ready[0]["ingest"].(string))
		}
	}
	// A build that never reaches the step (the broken control has no
	// publication) is killed instead.
	t.Logf("the node did not reach %s in 10s: kill -9", step)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGKILL))
	_, _ = p.Wait(30 * time.Second)
}

// compactAt runs `clickpipe archive compact` on the node's lake, ending
// itself at step ("" runs it to the end).
func compactAt(t *testing.T, tags, dir, step string) {
	t.Helper()
	bin, err := clickpipetest.BinaryWithTags(tags)
	require.NoError(t, err)
	cmd := exec.Command(bin, "archive", "compact", "--older-than", "0s", "--target-bytes", "1073741824")
	cmd.Env = append(os.Environ(), "CLICKPIPE_DATA_DIR="+dir, "CLICKPIPE_ARCHIVE_URL=file://"+filepath.Join(dir, "lake"),
		"CLICKPIPE_CRASHPOINT="+step, "CLICKPIPE_CRASHPOINT_HIT=1")
	out, err := cmd.CombinedOutput()
	if step == "" {
		require.NoError(t, err, "%s", out)
		return
	}
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s", out)
	require.Equal(t, 137, ee.ExitCode(), "compaction did not stop at %s: %s", step, out)
}

type globReport struct {
	report
	// UncommittedSeen is the most uncommitted files a glob reader saw at
	// one of the stops; DupSeen the most duplicate rows.
	UncommittedSeen int `json:"uncommitted_seen"`
	DupSeen         int `json:"dup_seen"`
	// DupGlob and MissingGlob compare the final glob read with the stream.
	DupGlob     int `json:"dup_glob"`
	MissingGlob int `json:"missing_glob"`
}

// globLoop runs the stops; with firstFault it returns at the first stop
// where the checker finds a fault (what a negative control needs).
func globLoop(t *testing.T, tags string, firstFault bool) globReport {
	dir := t.TempDir()
	lake := filepath.Join(dir, "lake")
	p, addr := node(t, tags, dir)
	drv, stopLoad := startLoad(t, dir, addr, 4)
	defer stopLoad()
	var g globReport
	look := func(when string) {
		v := inspectGlob(t, lake)
		t.Logf("%s: glob reader sees %d ids, %d uncommitted files, %d duplicate rows", when, len(v.ids), v.Uncommitted, v.Dup)
		g.UncommittedSeen = max(g.UncommittedSeen, v.Uncommitted)
		g.DupSeen = max(g.DupSeen, v.Dup)
	}
	time.Sleep(1500 * time.Millisecond)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGKILL))
	_, _ = p.Wait(30 * time.Second)
	for _, step := range []string{"archive-before-manifest", "archive-before-publish", "publish-after-copy"} {
		crashAt(t, tags, dir, step, drv)
		look("stopped at " + step)
		if firstFault && g.UncommittedSeen+g.DupSeen > 0 {
			return g
		}
	}
	p, addr = node(t, tags, dir)
	drv.setAddr(addr)
	time.Sleep(1500 * time.Millisecond)
	stopLoad()
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
	g.report = verifyStopped(t, t.Name(), tags, dir, drv)
	look("after the restarts")

	for _, step := range []string{"compact-before-publish", "publish-after-delete"} {
		compactAt(t, tags, dir, step)
		look("compaction stopped at " + step)
	}
	compactAt(t, tags, dir, "")
	look("after compaction")

	stored, err := streamIDs(dir, partitions)
	require.NoError(t, err)
	final := inspectGlob(t, lake)
	for id := range stored {
		switch n := final.ids["dev/"+id]; {
		case n == 0:
			g.MissingGlob++
		case n > 1:
			g.DupGlob += n - 1
		}
	}
	if qdir, ok := duckdbDir(t); ok {
		rows, distinct := duckdbGlob(t, qdir, lake)
		t.Logf("DuckDB read_parquet('events/**/*.parquet'): %d rows, %d distinct ids, %d in the stream", rows, distinct, len(stored))
		require.Equal(t, len(stored), distinct, "DuckDB glob read misses events")
		g.DupGlob = max(g.DupGlob, rows-distinct)
	}
	t.Logf("glob report: uncommitted_seen %d dup_seen %d dup_glob %d missing_glob %d", g.UncommittedSeen, g.DupSeen, g.DupGlob, g.MissingGlob)
	g.report.log(t)
	require.Positive(t, g.Acked, "the load acknowledged nothing: the test proves nothing")
	return g
}

// TestLakeSafeForGlobReaders: crashes at every step of the flush and of
// compaction never leave an uncommitted file or a duplicate row visible to
// a glob reader, and the final glob read holds every stored event once.
func TestLakeSafeForGlobReaders(t *testing.T) {
	g := globLoop(t, "clickpipe_crashpoints", false)
	require.Zero(t, g.Lost, "acknowledged events lost: %v", g.LostSample)
	require.Zero(t, g.DupArchive)
	require.Zero(t, g.MissingArchive)
	require.Zero(t, g.UncommittedSeen, "a glob reader saw uncommitted files")
	require.Zero(t, g.DupSeen, "a glob reader saw an event twice")
	require.Zero(t, g.DupGlob, "the final glob read counts events twice")
	require.Zero(t, g.MissingGlob, "the final glob read misses events")
}

// Negative control: objects written straight under the table's prefix
// before the manifest (the lake before staging) are seen uncommitted.
func TestGlobCheckerCatchesUnstagedObjects(t *testing.T) {
	g := globLoop(t, "clickpipe_crashpoints,clickpipe_broken_unstaged", true)
	require.Positive(t, g.UncommittedSeen, "the glob checker did not notice uncommitted files under the table's prefix")
}

// duckdbDir is test/duckdb when scripts/install-duckdb.sh has installed
// it (CLICKPIPE_DUCKDB=1, as in .ci/run, requires it).
func duckdbDir(t *testing.T) (string, bool) {
	dir, err := filepath.Abs(filepath.Join("..", "duckdb"))
	require.NoError(t, err)
	_, modErr := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api", "package.json"))
	_, nodeErr := exec.LookPath("node")
	if modErr == nil && nodeErr == nil {
		return dir, true
	}
	if os.Getenv("CLICKPIPE_DUCKDB") == "1" {
		t.Fatalf("CLICKPIPE_DUCKDB=1 but DuckDB is not usable (run scripts/install-duckdb.sh): %v %v", modErr, nodeErr)
	}
	return "", false
}

// duckdbGlob counts the rows and distinct messageIds DuckDB finds with
// read_parquet('<lake>/events/**/*.parquet').
func duckdbGlob(t *testing.T, qdir, lake string) (rows, distinct int) {
	t.Helper()
	var s struct {
		Rows        int `json:"rows"`
		DistinctIDs int `json:"distinct_ids"`
	}
	duckdbJSON(t, qdir, &s, lake, archive.TableEvents, "--glob")
	return s.Rows, s.DistinctIDs
}

// duckdbJSON runs test/duckdb/query.mjs with args and decodes its answer.
func duckdbJSON(t *testing.T, qdir string, out any, args ...string) {
	t.Helper()
	cmd := exec.Command("node", append([]string{"query.mjs"}, args...)...)
	cmd.Dir = qdir
	b, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("duckdb query: %v\n%s", err, ee.Stderr)
	}
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, out), string(b))
}
