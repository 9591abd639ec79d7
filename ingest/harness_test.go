package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	keyWeb    = "wk_web_0123456789"
	keyServer = "wk_server_0123456789"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Sources = []Source{{Name: "web", WriteKey: keyWeb}, {Name: "server", WriteKey: keyServer}}
	cfg.CommitLinger = time.Millisecond
	cfg.PublishTimeout = 2 * time.Second
	return cfg
}

// harness runs a real Ingest behind a real HTTP server.
type harness struct {
	in  *Ingest
	srv *httptest.Server
	reg *prometheus.Registry
}

func start(t *testing.T, cfg Config, pub Publisher, gate Gate) *harness {
	t.Helper()
	return startDeps(t, cfg, Deps{Publisher: pub, Partitions: 4, Gate: gate})
}

// startDeps is start with every dependency given.
func startDeps(t *testing.T, cfg Config, deps Deps) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	in, err := New(cfg, deps, discard(), reg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- in.Run(ctx) }()
	eventually(t, 2*time.Second, in.running.Load)
	srv := httptest.NewServer(in.Handler())
	t.Cleanup(func() {
		srv.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		require.NoError(t, in.Shutdown(sctx))
		cancel()
		require.NoError(t, <-runErr)
	})
	return &harness{in: in, srv: srv, reg: reg}
}

// startBuffer runs ingest on a real embedded JetStream.
func startBuffer(t *testing.T, cfg Config) (*harness, *buffer.Buffer) {
	b := buffertest.New(t, buffertest.Config(), "")
	return start(t, cfg, b, nil), b
}

func eventually(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type req struct {
	method, path string
	body         []byte
	header       map[string]string
	gzip         bool
}

func basic(key string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":")) }

func (h *harness) do(t *testing.T, r req) (*http.Response, []byte) {
	t.Helper()
	body := r.body
	if r.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		require.NoError(t, zw.Close())
		body = buf.Bytes()
	}
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	hr, err := http.NewRequest(method, h.srv.URL+r.path, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	if r.gzip {
		hr.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := h.srv.Client().Do(hr)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, out
}

// capture is a fault-injecting publisher: it can hold publishes until
// released, fail them, and records what it stored.
type capture struct {
	mu   sync.Mutex
	hold chan struct{} // when non-nil, publishes wait for it to close
	err  error
	// failedErr fails only PublishFailed (a full FAILED stream).
	failedErr error
	entered   chan struct{}
	events    [][]byte
	failed    [][]byte
	msgs      int
}

func (c *capture) Publish(ctx context.Context, p int, body []byte, hdr map[string]string) (uint64, error) {
	c.mu.Lock()
	hold, err, entered := c.hold, c.err, c.entered
	c.mu.Unlock()
	if entered != nil {
		select {
		case entered <- struct{}{}:
		default:
		}
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs++
	_ = event.Lines(body, func(_ int, line []byte) error {
		c.events = append(c.events, bytes.Clone(line))
		return nil
	})
	return uint64(c.msgs), nil
}

func (c *capture) PublishFailed(ctx context.Context, body []byte, hdr map[string]string) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.failedErr != nil {
		return 0, c.failedErr
	}
	_ = event.Lines(body, func(_ int, line []byte) error {
		c.failed = append(c.failed, bytes.Clone(line))
		return nil
	})
	return 1, nil
}

func (c *capture) decoded(t *testing.T) []event.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	evs, err := event.Decode(bytes.Join(c.events, []byte("\n")))
	require.NoError(t, err)
	return evs
}

func (c *capture) failedItems(t *testing.T) []event.Failed {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []event.Failed
	for _, l := range c.failed {
		var f event.Failed
		require.NoError(t, jsonUnmarshal(l, &f))
		out = append(out, f)
	}
	return out
}

var errBoom = errors.New("boom")

func track(user string) string {
	return `{"type":"track","event":"Video Playback Started","userId":"` + user + `","properties":{"title_id":"t-42"}}`
}

func batchBody(items ...string) []byte {
	return []byte(`{"batch":[` + strings.Join(items, ",") + `]}`)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// rawPost writes a request by hand with Content-Length cl, whatever the
// body really is, and reads the answer.
func (h *harness) rawPost(t *testing.T, path string, hdr map[string]string, body []byte, cl string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n", path, cl)
	for k, v := range hdr {
		if k != "X-Test-CL" {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	_, err = conn.Write(append([]byte(b.String()), body...))
	require.NoError(t, err)
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, out
}

func httptestRequest(remote, xff string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/batch", nil)
	r.RemoteAddr = remote
	if xff != "" {
		r.Header.Set("X-Forwarded-For", xff)
	}
	return r
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func counterValue(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	require.NoError(t, err)
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}
