package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a `clickpipe serve` child process on a temp data dir.
type server struct {
	cmd      *exec.Cmd
	dataDir  string
	ingest   string // host:port
	query    string
	writeKey string
	token    string
	halted   bool
	done     chan error
}

// startServer runs bin serve with env overrides and waits for "ready".
func startServer(ctx context.Context, bin string, env ...string) (*server, error) {
	dir, err := os.MkdirTemp("", "clickpipe-bench-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	s := &server{dataDir: dir, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "serve", "--log-format", "json", "--log-level", "info")
	s.cmd.Env = append(os.Environ(),
		"CLICKPIPE_DATA_DIR="+dir,
		"CLICKPIPE_INGEST_LISTEN=127.0.0.1:0",
		"CLICKPIPE_QUERY_LISTEN=127.0.0.1:0",
		"CLICKPIPE_DISK_MIN_FREE_BYTES=1GiB",
		"CLICKPIPE_DISK_MIN_FREE_PERCENT=0",
	)
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout = io.Discard
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	ready := make(chan map[string]any, 1)
	var lastErr string // the last error (or plain line) logged before ready
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		isReady := false
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				if !isReady {
					lastErr = sc.Text() // the exit message is plain text
				}
				continue
			}
			switch {
			case m["msg"] == "ready" && !isReady:
				isReady = true
				ready <- m
			case m["level"] == "ERROR" && !isReady:
				lastErr = sc.Text()
			}
		}
		s.done <- s.cmd.Wait()
	}()
	select {
	case m := <-ready:
		s.ingest, _ = m["ingest"].(string)
		s.query, _ = m["query"].(string)
	case err := <-s.done:
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("server exited before ready: %v; last error logged: %s", err, lastErr)
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, errors.New("server not ready within 60s")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	s.writeKey = readSecret(filepath.Join(dir, "dev-write-key"))
	s.token = readSecret(filepath.Join(dir, "dev-query-token"))
	for _, kv := range env {
		if key, ok := strings.CutPrefix(kv, "CLICKPIPE_INGEST_SOURCES="); ok {
			s.writeKey = key // one configured key of the "default" source
		}
	}
	if s.writeKey == "" {
		s.stop()
		return nil, errors.New("no development write key in the data dir")
	}
	return s, nil
}

func readSecret(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// stop sends SIGTERM, waits up to 40 s (then SIGKILL) and removes the
// data dir.
func (s *server) stop() {
	s.halt()
	_ = os.RemoveAll(s.dataDir)
}

// halt stops the server and keeps its data dir (stop removes it later).
func (s *server) halt() {
	if s.halted {
		return
	}
	s.halted = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// cpuSeconds is the process's user+system CPU time so far.
func (s *server) cpuSeconds() float64 { return procCPU(s.cmd.Process.Pid) }

// procCPU reads user+system CPU seconds of pid from /proc.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// rssMiB is the resident set size.
func (s *server) rssMiB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// metric returns the largest sample of a metric family on the query
// listener's /metrics (lag is per consumer); ok is false when absent.
func (s *server) metric(ctx context.Context, name string) (float64, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.query+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.token) // /metrics needs the query token
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var sum float64
	found := false
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) || (len(l) > len(name) && l[len(name)] != ' ' && l[len(name)] != '{') {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum, found = max(sum, v), true
		}
	}
	return sum, found
}

// profile fetches a CPU profile of secs seconds from the query listener's
// /debug/pprof, when the server exposes it, into path.
func (s *server) profile(ctx context.Context, secs int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+10)*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.query, secs)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching profile: status %d (no /debug/pprof on the query listener)", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("saving profile: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return fmt.Errorf("saving profile: %w", err)
	}
	return nil
}
