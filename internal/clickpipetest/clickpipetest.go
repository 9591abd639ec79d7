// Package clickpipetest builds the real clickpipe binary and runs it as a
// child process on temp dirs and loopback ports, collecting its JSON logs,
// for end-to-end and reliability tests.
package clickpipetest

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
	"sync/atomic"
	"testing"
	"time"
)

var (
	buildMu sync.Mutex
	builtIn string                // temp dir holding every build
	builds  = map[string]string{} // tags -> binary path
)

// RemoveBinary deletes the built binaries; call it from TestMain after
// m.Run.
func RemoveBinary() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if builtIn != "" {
		_ = os.RemoveAll(builtIn)
		builtIn, builds = "", map[string]string{}
	}
}

// Binary builds clickpipe once per test process.
func Binary() (string, error) { return BinaryWithTags("") }

// BinaryWithTags builds clickpipe with build tags (comma separated) once
// per test process; negative controls use tags that break a promise on
// purpose.
func BinaryWithTags(tags string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := builds[tags]; ok {
		return p, nil
	}
	if builtIn == "" {
		dir, err := os.MkdirTemp("", "clickpipe-bin-")
		if err != nil {
			return "", err
		}
		builtIn = dir
	}
	out := filepath.Join(builtIn, "clickpipe"+strings.ReplaceAll("-"+tags, ",", "-"))
	cmd := exec.Command("go", "build", "-tags", tags, "-o", out, "github.com/clickpipe/clickpipe")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -tags %q: %v\n%s", tags, err, b)
	}
	builds[tags] = out
	return out, nil
}

// proc is a clickpipe serve child process whose JSON log lines are
// collected.
type Proc struct {
	t      testing.TB
	Cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []map[string]any
	stdout strings.Builder
	done   chan error
}

// Start runs `clickpipe serve` on dataDir with loopback ports picked by
// the kernel, small test budgets and extraEnv on top.
func Start(t testing.TB, dataDir string, extraEnv ...string) *Proc {
	t.Helper()
	return StartWith(t, "", dataDir, nil, extraEnv...)
}

// StartBinary is Start with a binary built with tags.
func StartBinary(t testing.TB, tags, dataDir string, extraEnv ...string) *Proc {
	t.Helper()
	return StartWith(t, tags, dataDir, nil, extraEnv...)
}

// StartWith is Start with build tags and extra serve arguments.
func StartWith(t testing.TB, tags, dataDir string, args []string, extraEnv ...string) *Proc {
	t.Helper()
	bin, err := BinaryWithTags(tags)
	if err != nil {
		t.Fatal(err)
	}
	return StartCommand(t, dataDir, exec.Command(bin, append([]string{"serve", "--log-format", "json"}, args...)...), extraEnv...)
}

// StartCommand runs cmd (a clickpipe serve, possibly under a tracer) with
// the test environment and collects its logs.
func StartCommand(t testing.TB, dataDir string, cmd *exec.Cmd, extraEnv ...string) *Proc {
	t.Helper()
	// serve keeps a generated development query token in this file and
	// reuses it: seed it so tests know the token /metrics needs.
	for name, secret := range map[string]string{"dev-query-token": DevQueryToken, "dev-admin-token": DevAdminToken} {
		if tok := filepath.Join(dataDir, name); dataDir != "" {
			if _, err := os.Stat(tok); os.IsNotExist(err) {
				_ = os.MkdirAll(dataDir, 0o755)
				_ = os.WriteFile(tok, []byte(secret+"\n"), 0o600)
			}
		}
	}
	cmd.Env = append(os.Environ(),
		"CLICKPIPE_DATA_DIR="+dataDir,
		"CLICKPIPE_INGEST_LISTEN=127.0.0.1:0",
		"CLICKPIPE_QUERY_LISTEN=127.0.0.1:0",
		"CLICKPIPE_DISK_MIN_FREE_BYTES=1MiB",
		"CLICKPIPE_DISK_MIN_FREE_PERCENT=0",
		"CLICKPIPE_BUFFER_PARTITIONS=4",
		"CLICKPIPE_BUFFER_MAX_BYTES=256MiB",
		"CLICKPIPE_ARCHIVE_FLUSH_INTERVAL=1s",
		"CLICKPIPE_ARCHIVE_ERASE_INTERVAL=1s",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{t: t, Cmd: cmd, done: make(chan error, 1)}
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
	var exited atomic.Bool
	go func() { wg.Wait(); err := cmd.Wait(); exited.Store(true); p.done <- err }()
	t.Cleanup(func() {
		if !exited.Load() {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// find returns the first log line with msg, waiting up to d.
func (p *Proc) Find(msg string, d time.Duration) map[string]any {
	p.t.Helper()
	var found map[string]any
	Eventually(p.t, d, func() bool {
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

func (p *Proc) All(msg string) []map[string]any {
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

func (p *Proc) Wait(d time.Duration) (int, time.Duration) {
	p.t.Helper()
	t0 := time.Now()
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode(), time.Since(t0)
	case <-time.After(d):
		p.t.Fatalf("process did not exit within %s", d)
		return -1, 0
	}
}

// WaitExit waits up to d for the process to exit and reports its exit
// status; ok is false if it is still running.
func (p *Proc) WaitExit(d time.Duration) (code int, ok bool) {
	select {
	case err := <-p.done:
		p.done <- err // Wait and the clean-up still see it
		return p.Cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

func Eventually(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for "+format, append([]any{d}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DevQueryToken is the development query token of every node these
// helpers start without configured query tokens.
const DevQueryToken = "qt_clickpipetest_development"

// DevAdminToken is the development admin token (regulations API, token
// name "dev") of every node these helpers start without configured admin
// tokens.
const DevAdminToken = "at_clickpipetest_development"

func Get(t *testing.T, url string) (int, string) {
	t.Helper()
	return GetAuth(t, url, "")
}

// GetAuth is Get with a bearer token (none when empty).
func GetAuth(t *testing.T, url, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Stdout is everything the process printed on standard output so far.
func (p *Proc) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// Lines returns a copy of the log lines so far.
func (p *Proc) Lines() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.lines...)
}
