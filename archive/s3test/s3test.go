// Package s3test runs a real S3-compatible server (versitygw, installed by
// scripts/install-versitygw.sh) and a fault-injecting proxy in front of it,
// for the archive's integration tests and the reliability suite.
package s3test

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Credentials of the test server.
const (
	AccessKey = "clickpipe-test"
	SecretKey = "clickpipe-test-secret"
)

// Versitygw is a running server: its address and its posix root, where
// bucket b and key k are the file <Dir>/b/k.
type Versitygw struct {
	Addr string
	Dir  string
}

// Path finds the binary scripts/install-versitygw.sh installs.
// With CLICKPIPE_VERSITYGW set the test fails instead of skipping.
func Path(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CLICKPIPE_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CLICKPIPE_VERSITYGW=%s: %v", p, err)
		}
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", ".cache", "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		t.Skip("versitygw not installed: run scripts/install-versitygw.sh (set CLICKPIPE_VERSITYGW to require it)")
	}
	return p
}

func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// Start runs versitygw on a free loopback port over a temp dir and
// stops it (by its own pid) when the test ends.
func Start(t testing.TB) Versitygw {
	t.Helper()
	bin := Path(t)
	dir := t.TempDir()
	addr := FreePort(t)
	cmd := exec.Command(bin, "--port", addr, "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
	if os.Getenv("ARCHIVE_TEST_LOG") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return Versitygw{Addr: addr, Dir: dir}
}

// Fault modes of the proxy.
const (
	FaultNone    = iota
	FaultRefuse  // the port is closed: connection refused
	FaultHalf5xx // every other request (at random) gets 503 SlowDown
	FaultSlow    // every request waits before it is forwarded
	FaultReset   // uploads are cut off (TCP reset) after part of the body
)

// FaultProxy is a reverse proxy in front of an S3 server that fails on
// command. Only for fault injection.
type FaultProxy struct {
	t      testing.TB
	Addr   string
	target *url.URL
	mode   atomic.Int32
	Hits   atomic.Int64 // requests failed on purpose

	mu  sync.Mutex
	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup
}

// NewFaultProxy starts a proxy to target (host:port), closed with the test.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	u, err := url.Parse("http://" + target)
	require.NoError(t, err)
	p := &FaultProxy{t: t, target: u, Addr: FreePort(t)}
	p.listen()
	t.Cleanup(p.close)
	return p
}

func (p *FaultProxy) listen() {
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly after a close
		if ln, err = net.Listen("tcp", p.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(p.t, err)
	rp := httputil.NewSingleHostReverseProxy(p.target)
	rp.ErrorLog = nil
	srv := &http.Server{Handler: p.handler(rp), ReadHeaderTimeout: 5 * time.Second}
	p.mu.Lock()
	p.ln, p.srv = ln, srv
	p.mu.Unlock()
	p.wg.Go(func() { _ = srv.Serve(ln) })
}

func (p *FaultProxy) close() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	p.wg.Wait()
}

// Set switches the fault mode; refuse closes the port, leaving it reopens.
func (p *FaultProxy) Set(mode int32) {
	old := p.mode.Swap(mode)
	switch {
	case mode == FaultRefuse && old != FaultRefuse:
		p.close()
	case old == FaultRefuse && mode != FaultRefuse:
		p.listen()
	}
}

func (p *FaultProxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p.mode.Load() {
		case FaultHalf5xx:
			if rand.IntN(2) == 0 {
				p.Hits.Add(1)
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>`)
				return
			}
		case FaultSlow:
			p.Hits.Add(1)
			select {
			case <-time.After(700 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		case FaultReset:
			if r.Method == http.MethodPut && r.ContentLength > 64 {
				p.Hits.Add(1)
				_, _ = io.CopyN(io.Discard, r.Body, r.ContentLength/2)
				p.reset(w)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// reset aborts the connection with a TCP RST.
func (p *FaultProxy) reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(errors.Join(errors.New("fault proxy: hijack"), err))
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
