package reliability

import (
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

const partitions = 4

func TestMain(m *testing.M) {
	code := m.Run()
	clickpipetest.RemoveBinary()
	os.Exit(code)
}

// long reports whether the long tier was asked for.
func long() bool { return os.Getenv("CLICKPIPE_RELIABILITY") == "long" }

// node starts a clickpipe built with tags on dataDir and waits until ready.
func node(t *testing.T, tags, dataDir string) (*clickpipetest.Proc, string) {
	t.Helper()
	p := clickpipetest.StartBinary(t, tags, dataDir)
	ready := p.Find("ready", 30*time.Second)
	start := p.Find("starting", time.Second)
	t0, _ := time.Parse(time.RFC3339Nano, start["time"].(string))
	t1, _ := time.Parse(time.RFC3339Nano, ready["time"].(string))
	if took := t1.Sub(t0); took > 5*time.Second {
		t.Errorf("recovery took %s from start to ready, want within 5s", took)
	}
	return p, ready["ingest"].(string)
}

// killLoop runs load against a node, kill -9s it at random moments cycles
// times, restarting it each time, then stops it gracefully and checks the
// stream against the witness.
func killLoop(t *testing.T, tags string, cycles int, seed uint64) report {
	return faultLoop(t, tags, cycles, seed, syscall.SIGKILL)
}

// faultLoop is killLoop with the signal of choice.
func faultLoop(t *testing.T, tags string, cycles int, seed uint64, sig syscall.Signal) report {
	dir := t.TempDir()
	p, addr := node(t, tags, dir)
	drv, stopLoad := startLoad(t, dir, addr, 4)
	defer stopLoad()

	rng := rand.New(rand.NewPCG(seed, 7))
	for range cycles {
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		require.NoError(t, p.Cmd.Process.Signal(sig))
		exit, took := p.Wait(30 * time.Second)
		if sig == syscall.SIGTERM {
			require.Equal(t, 0, exit, "SIGTERM drains and exits 0")
			require.Less(t, took, 25*time.Second, "exit within the shutdown budget")
			// http.Server.Shutdown waits for every active request; only an
			// overrun budget abandons one, and the lifecycle logs it.
			require.Empty(t, p.All("graceful drain budget spent, cancelling in-flight work"),
				"in-flight work abandoned during a graceful drain")
		}
		p, addr = node(t, tags, dir)
		drv.setAddr(addr)
	}
	time.Sleep(500 * time.Millisecond)
	stopLoad()
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit, "graceful stop after the kill loop")

	r := verifyStopped(t, t.Name(), tags, dir, drv)
	r.Cycles = cycles
	status, errs, dropped, noRetryAfter := drv.counts()
	t.Logf("statuses %v, transport errors %d (dropped mid-request %d), 503/429 without Retry-After %d", status, errs, dropped, noRetryAfter)
	r.Dropped = dropped
	require.Zero(t, noRetryAfter, "every 503/429 carries Retry-After")
	r.log(t)
	require.Positive(t, r.Acked, "the load acknowledged nothing: the test proves nothing")
	return r
}

// T1: kill -9 at random moments under load; nothing acknowledged is lost.
func TestT1Kill9UnderLoad(t *testing.T) {
	cycles := 10
	if long() {
		cycles = 60
	}
	r := killLoop(t, "", cycles, 1)
	require.Zero(t, r.Lost, "acknowledged events lost: %v", r.LostSample)
	require.Zero(t, r.Unexpected)
	require.Zero(t, r.DupApplied, "events applied twice to serving state")
	require.Zero(t, r.MissingApplied, "stream events missing from serving state")
	require.Zero(t, r.DupArchive, "events in two committed lake objects")
	require.Zero(t, r.MissingArchive, "stream events missing from the lake")
	require.Zero(t, r.UnexpectedArchive)
}

// Negative control for T1: a build that answers 200 before the buffer
// acknowledged must be caught losing events.
func TestT1CheckerCatchesEarlyAck(t *testing.T) {
	r := killLoop(t, "clickpipe_broken_early_ack", 4, 2)
	require.Positive(t, r.Lost, "the checker did not notice acknowledged events missing from a broken build")
}

// T2: SIGTERM at random moments under load: nothing lost, every in-flight
// request answered (the server's drain never overran its budget; client-side
// resets of reused keep-alive connections racing the idle close are
// reported as "dropped", not failed: SDKs retry them), exit 0 within the
// budget each time.
func TestT2SigtermUnderLoad(t *testing.T) {
	cycles := 5
	if long() {
		cycles = 30
	}
	r := faultLoop(t, "", cycles, 3, syscall.SIGTERM)
	require.Zero(t, r.Lost, "acknowledged events lost: %v", r.LostSample)
	require.Zero(t, r.Unexpected)
	require.Zero(t, r.DupApplied, "events applied twice to serving state")
	require.Zero(t, r.MissingApplied, "stream events missing from serving state")
	require.Zero(t, r.DupArchive, "events in two committed lake objects")
	require.Zero(t, r.MissingArchive, "stream events missing from the lake")
}

// Negative control for the serving-state checker: resuming the durable
// consumer's own position (instead of the Badger checkpoint) lets newer
// messages overtake unacknowledged older ones after a crash, which are then
// skipped as already applied.
func TestT1CheckerCatchesTrustedRedelivery(t *testing.T) {
	r := killLoop(t, "clickpipe_broken_trust_redelivery", 4, 4)
	require.Positive(t, r.MissingApplied+r.DupApplied,
		"the serving-state checker did not notice events skipped after a crash")
}

// Negative control for the lake checker: an archive that does not dedup
// writes the retried copies twice.
// Whether a kill lands while a retried request is in flight is chance, so
// a run without copies in the stream is repeated (other seed, at most
// three runs); the checker must then report the duplicates.
func TestT1CheckerCatchesLakeDuplicates(t *testing.T) {
	var r report
	for seed := uint64(5); seed < 8; seed++ {
		if r = killLoop(t, "clickpipe_broken_lake_dedup", 4, seed); r.StreamCopies > 0 {
			break
		}
		t.Logf("seed %d: no retried copies reached the stream; running again", seed)
	}
	require.Positive(t, r.StreamCopies, "no retried copies reached the stream in three runs: the control proves nothing")
	require.Positive(t, r.DupArchive, "the lake checker did not notice duplicate rows")
}
