package reliability

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// ackOrder runs a node under strace, sends requests one at a time and
// returns how many 200 answers were written and how many of them had no
// fsync of a JetStream message block since the previous answer.
func ackOrder(t *testing.T, durability string) (answers, unsynced int) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not installed (scripts/test-all installs it)")
	}
	bin, err := clickpipetest.Binary()
	require.NoError(t, err)
	dir := t.TempDir()
	trace := filepath.Join(t.TempDir(), "trace.txt")
	p := clickpipetest.StartCommand(t, dir, exec.Command(strace, "-f", "-qq", "-y", "-s", "16", "-e", "signal=none",
		"-e", "trace=fsync,fdatasync,write,writev,sendto,sendmsg", "-o", trace,
		bin, "serve", "--log-format", "json", "--config", twoSourceConfig(t)),
		"CLICKPIPE_BUFFER_DURABILITY="+durability)
	ready := p.Find("ready", 60*time.Second)
	for i := range 20 {
		_, body := batch(9, i, 5)
		require.Equal(t, http.StatusOK, postBatch(t, ready["ingest"].(string), keyWeb, body))
	}
	// strace detaches on a signal instead of forwarding it: stop the
	// traced clickpipe itself.
	pid := p.Cmd.Process.Pid
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	require.NoError(t, err)
	child, err := strconv.Atoi(strings.Fields(string(kids))[0])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(child, syscall.SIGTERM))
	p.Wait(60 * time.Second)

	f, err := os.Open(trace)
	require.NoError(t, err)
	defer f.Close()
	synced := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case (strings.Contains(l, "fsync(") || strings.Contains(l, "fdatasync(")) &&
			strings.Contains(l, "/msgs/") && strings.HasSuffix(l, "= 0"):
			synced = true
		case strings.Contains(l, "resumed>") && (strings.Contains(l, "fsync") || strings.Contains(l, "fdatasync")) &&
			strings.HasSuffix(l, "= 0"):
			synced = true
		case strings.Contains(l, `"HTTP/1.1 200`):
			answers++
			if !synced {
				unsynced++
			}
			synced = false
		}
	}
	require.NoError(t, sc.Err())
	t.Logf("%s: %d answers, %d without a preceding JetStream fsync", durability, answers, unsynced)
	return answers, unsynced
}

// T3: in fsync mode every 200 is preceded by an fsync of the stream's
// files (strace ordering).
func TestT3AckOnlyAfterFsync(t *testing.T) {
	answers, unsynced := ackOrder(t, "fsync")
	require.GreaterOrEqual(t, answers, 20)
	require.Zero(t, unsynced, "a 200 was written before JetStream fsync'd")
}

// Negative control for T3: relaxed durability acknowledges without fsync,
// and the checker must see it.
func TestT3CheckerCatchesNoFsync(t *testing.T) {
	answers, unsynced := ackOrder(t, "relaxed")
	require.GreaterOrEqual(t, answers, 20)
	require.Positive(t, unsynced, fmt.Sprintf("the fsync-ordering checker saw nothing wrong in relaxed mode (%d answers)", answers))
}
