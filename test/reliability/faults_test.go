package reliability

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// metric reads one sample of a node's /metrics (name with labels, as
// printed), 0 when absent.
func metric(t *testing.T, query, series string) float64 {
	body := metricsBody(t, query)
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// metricsBody is a node's /metrics, read with the development query token
// of the test helpers or, for nodes on twoSourceConfig, its token.
func metricsBody(t *testing.T, query string) string {
	code, body := clickpipetest.GetAuth(t, "http://"+query+"/metrics", clickpipetest.DevQueryToken)
	if code == http.StatusUnauthorized {
		code, body = clickpipetest.GetAuth(t, "http://"+query+"/metrics", token)
	}
	require.Equal(t, http.StatusOK, code, "/metrics: %s", body)
	return body
}

// T9: a poison message in a partition (not produced by ingest, published
// straight to the stream) is counted and skipped; the partition keeps
// flowing.
func TestT9PoisonMessage(t *testing.T) {
	dir := t.TempDir()
	natsAddr := freePort(t)
	p := clickpipetest.StartWith(t, "", dir, []string{"--config", twoSourceConfig(t)}, "CLICKPIPE_BUFFER_LISTEN="+natsAddr)
	ready := p.Find("ready", 30*time.Second)
	nc, err := nats.Connect("nats://" + natsAddr)
	require.NoError(t, err)
	defer nc.Close()
	user := "poison-victim"
	part := event.Partition(user, partitions)
	js, err := nc.JetStream()
	require.NoError(t, err)
	_, err = js.Publish(buffer.Subject(part), []byte("this is not json\n{\"also\": broken"))
	require.NoError(t, err)

	_, body := batch(0, 1, 10)
	body = []byte(strings.ReplaceAll(string(body), "user-0-1", user))
	require.Equal(t, http.StatusOK, postBatch(t, ready["ingest"].(string), keyWeb, body))
	appliedEventually(t, ready["query"].(string), user, 10)
	require.Positive(t, metric(t, ready["query"].(string), `clickpipe_process_events_total{result="corrupt"}`),
		"poison lines are counted")
	code, _ := clickpipetest.Get(t, "http://"+ready["query"].(string)+"/readyz")
	require.Equal(t, http.StatusOK, code)
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// T10: the node is stopped (SIGSTOP) past the consumers' AckWait under
// load, so JetStream redelivers everything in flight; after SIGCONT nothing
// is applied twice and nothing stalls. The fast tier sets both AckWaits
// (sessionizer and archive, 30 s by default) to 10 s to stay short; the
// long tier keeps the defaults.
func TestT10SigstopPastAckWait(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	dir := t.TempDir()
	var env []string
	pause := 13 * time.Second
	if long() {
		pause = 45 * time.Second
	} else {
		env = []string{"CLICKPIPE_PROCESS_ACK_WAIT=10s", "CLICKPIPE_ARCHIVE_ACK_WAIT=10s"}
	}
	p := clickpipetest.Start(t, dir, env...)
	ready := p.Find("ready", 30*time.Second)
	drv, stop := loadAgainst(t, dir, ready["ingest"].(string))
	defer stop()
	time.Sleep(2 * time.Second)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGSTOP))
	time.Sleep(pause)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGCONT))
	okAfter := status(drv, http.StatusOK)
	clickpipetest.Eventually(t, 30*time.Second, func() bool { return status(drv, http.StatusOK) > okAfter+20 },
		"intake resumes after SIGCONT")
	stop()
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
	r := verifyStopped(t, t.Name(), "", dir, drv)
	r.log(t)
	require.Zero(t, r.Lost)
	require.Zero(t, r.DupApplied, "redelivery after AckWait applied events twice")
	require.Zero(t, r.MissingApplied)
	require.Zero(t, r.DupArchive)
	require.Zero(t, r.MissingArchive)
}

// T11: the stream is rolled back behind the serving state's checkpoints
// (its newest block deleted while the node is down). The node must refuse
// to consume the affected partitions and say so on /readyz and in a metric,
// never silently skip new messages as "already applied".
func TestT11RolledBackStreamRefusedLoudly(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	ready := p.Find("ready", 30*time.Second)
	drv, stop := loadAgainst(t, dir, ready["ingest"].(string))
	clickpipetest.Eventually(t, 20*time.Second, func() bool { return status(drv, http.StatusOK) > 50 }, "some load")
	stop()
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	p.Wait(30 * time.Second)

	// Roll the stream back: remove its message blocks and index, as a
	// restored old snapshot of the disk would lose them.
	streamDir := filepath.Join(buffer.StoreDir(dir), "jetstream", "$G", "streams", "EVENTS")
	blocks, err := filepath.Glob(filepath.Join(streamDir, "msgs", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, blocks)
	for _, b := range blocks {
		require.NoError(t, os.Remove(b))
	}

	p = clickpipetest.Start(t, dir)
	ready = p.Find("ready", 30*time.Second)
	query := ready["query"].(string)
	clickpipetest.Eventually(t, 10*time.Second, func() bool {
		code, body := clickpipetest.Get(t, "http://"+query+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "stream behind checkpoint")
	}, "readyz to refuse with the sequence regression")
	refused := 0.0
	for part := range partitions {
		refused += metric(t, query, fmt.Sprintf(`clickpipe_process_sequence_regression{partition="%d"}`, part))
	}
	require.Positive(t, refused, "the regression metric names the refused partitions")
	_, body := clickpipetest.Get(t, "http://"+query+"/readyz")
	require.Contains(t, body, "stream behind the lake's committed end", "the archive refuses too")
	require.Equal(t, 1.0, metric(t, query, `clickpipe_archive_sequence_regression{table="events"}`))
}
