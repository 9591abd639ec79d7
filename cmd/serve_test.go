package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// binary builds clickpipe once per test process.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "clickpipe-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "clickpipe")
	cmd := exec.Command("go", "build", "-o", out, "github.com/clickpipe/clickpipe")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return out, nil
})

// proc is a clickpipe serve child process whose JSON log lines are
// collected.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []map[string]any
	stdout strings.Builder
	done   chan error
}

func startServe(t *testing.T, dataDir string, extraEnv ...string) *proc {
	t.Helper()
	bin, err := binary()
	require.NoError(t, err)
	cmd := exec.Command(bin, "serve", "--log-format", "json")
	cmd.Env = append(os.Environ(),
		"CLICKPIPE_DATA_DIR="+dataDir,
		"CLICKPIPE_INGEST_LISTEN=127.0.0.1:0",
		"CLICKPIPE_QUERY_LISTEN=127.0.0.1:0",
		"CLICKPIPE_DISK_MIN_FREE_BYTES=1MiB",
		"CLICKPIPE_DISK_MIN_FREE_PERCENT=0",
		"CLICKPIPE_BUFFER_PARTITIONS=4",
		"CLICKPIPE_BUFFER_MAX_BYTES=256MiB",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &proc{t: t, cmd: cmd, done: make(chan error, 1)}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"raw": sc.Text()}
			}
			p.mu.Lock()
			p.lines = append(p.lines, m)
			p.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		b, _ := io.ReadAll(stdout)
		p.mu.Lock()
		p.stdout.Write(b)
		p.mu.Unlock()
	}()
	go func() { wg.Wait(); p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// find returns the first log line with msg, waiting up to d.
func (p *proc) find(msg string, d time.Duration) map[string]any {
	p.t.Helper()
	var found map[string]any
	eventually(p.t, d, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.lines {
			if l["msg"] == msg {
				found = l
				return true
			}
		}
		return false
	}, "log line %q", msg)
	return found
}

func (p *proc) all(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, l := range p.lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

func (p *proc) wait(d time.Duration) (int, time.Duration) {
	p.t.Helper()
	t0 := time.Now()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), time.Since(t0)
	case <-time.After(d):
		p.t.Fatalf("process did not exit within %s", d)
		return -1, 0
	}
}

func eventually(t *testing.T, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for "+format, append([]any{d}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The lifecycle end to end through the built binary: ready on both
// listeners, SIGTERM drains in the documented order and exits 0.
func TestServeStartsAndDrainsInOrder(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir)
	ready := p.find("ready", 30*time.Second)
	ingest, query := ready["ingest"].(string), ready["query"].(string)
	for _, addr := range []string{ingest, query} {
		code, body := get(t, "http://"+addr+"/readyz")
		require.Equal(t, http.StatusOK, code, body)
		code, _ = get(t, "http://"+addr+"/healthz")
		require.Equal(t, http.StatusOK, code)
	}
	code, metrics := get(t, "http://"+query+"/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, m := range []string{"clickpipe_buffer_stream_messages", "clickpipe_buffer_stream_last_sequence", "go_goroutines", "clickpipe_process_cpu_seconds_total"} {
		require.Contains(t, metrics, m)
	}
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(t, err)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	exit, took := p.wait(30 * time.Second)
	require.Equal(t, 0, exit)
	require.Less(t, took, 25*time.Second)
	require.Contains(t, p.stdout.String(), strings.TrimSpace(string(key)), "dev write key printed")

	var order []string
	for _, l := range p.all("stopped") {
		order = append(order, l["component"].(string))
	}
	require.Equal(t, stopOrder, order)
	_, err = os.Stat(filepath.Join(dir, "RUNNING"))
	require.True(t, os.IsNotExist(err), "clean stop removes the running marker")
}

func TestSecondProcessOnSameDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	first := startServe(t, dir)
	first.find("ready", 30*time.Second)
	second := startServe(t, dir)
	exit, _ := second.wait(30 * time.Second)
	require.NotEqual(t, 0, exit)
	eventually(t, 5*time.Second, func() bool {
		for _, l := range second.all("") {
			_ = l
		}
		second.mu.Lock()
		defer second.mu.Unlock()
		for _, l := range second.lines {
			if raw, _ := l["raw"].(string); strings.Contains(raw, "in use") {
				return true
			}
		}
		return false
	}, "an 'in use' error from the second process")
	code, _ := get(t, "http://"+first.find("ready", time.Second)["query"].(string)+"/readyz")
	require.Equal(t, http.StatusOK, code, "the first process is unaffected")
}

func TestRecoversAfterKill9(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir)
	p.find("ready", 30*time.Second)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.wait(10 * time.Second)

	t0 := time.Now()
	p2 := startServe(t, dir)
	p2.find("ready", 30*time.Second)
	require.Less(t, time.Since(t0), 10*time.Second, "ready within seconds after kill -9")
	require.NotEmpty(t, p2.all("previous run did not shut down cleanly (kill -9, crash or power loss); recovering from the stores"))
	require.NoError(t, p2.cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p2.wait(30 * time.Second)
	require.Equal(t, 0, exit)
}

// Below the disk watermark the process runs but is not ready.
func TestDiskWatermarkMakesNotReady(t *testing.T) {
	p := startServe(t, t.TempDir(), "CLICKPIPE_DISK_MIN_FREE_PERCENT=99.99")
	ready := p.find("ready", 30*time.Second)
	eventually(t, 5*time.Second, func() bool {
		code, body := get(t, "http://"+ready["query"].(string)+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "below watermark")
	}, "readyz 503 naming the disk watermark")
}

func TestCheckCommand(t *testing.T) {
	bin, err := binary()
	require.NoError(t, err)
	out, err := exec.Command(bin, "check", "--config", "../config.yaml").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "configuration OK")

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("buffer:\n  retention: forever\n"), 0o600))
	cmd := exec.Command(bin, "check", "--config", bad)
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	require.Equal(t, 2, cmd.ProcessState.ExitCode())
	require.Contains(t, string(out), "retention")
}
