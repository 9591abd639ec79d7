package reliability

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// hostileCase is one bad request and the status it must get.
type hostileCase struct {
	name   string
	body   func() []byte
	header map[string]string
	want   int
}

func gzipBomb() []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 256 { // 256 MiB of zeros, about 256 KiB compressed
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	return buf.Bytes()
}

func hostileCases() []hostileCase {
	okItem := `{"type":"track","event":"e","userId":"h"}`
	badKey := "Basic " + base64.StdEncoding.EncodeToString([]byte("nope:"))
	return []hostileCase{
		{"invalid json", func() []byte { return []byte(`{"batch":[`) }, nil, 400},
		{"oversize batch", func() []byte {
			return []byte(`{"batch":[` + okItem + `],"pad":"` + strings.Repeat("x", 600<<10) + `"}`)
		}, nil, 413},
		{"gzip bomb", gzipBomb, map[string]string{"Content-Encoding": "gzip"}, 413},
		{"deep json", func() []byte {
			return []byte(`{"batch":[{"type":"track","event":"e","userId":"h","properties":` +
				strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000) + `}]}`)
		}, nil, 400},
		{"invalid utf-8", func() []byte {
			return []byte("{\"batch\":[{\"type\":\"track\",\"event\":\"\xff\xfe\",\"userId\":\"h\"}]}")
		}, nil, 400},
		{"bad write key", func() []byte { return []byte(`{"batch":[` + okItem + `]}`) }, map[string]string{"Authorization": badKey}, 401},
		{"missing write key", func() []byte { return []byte(`{"batch":[` + okItem + `]}`) }, map[string]string{"Authorization": "-"}, 401},
		{"claims gzip, is not", func() []byte { return []byte(`{"batch":[]}`) }, map[string]string{"Content-Encoding": "gzip"}, 400},
		{"too many items: the rest goes to failed, 200", func() []byte {
			items := make([]string, 2600)
			for i := range items {
				items[i] = `{"type":"track","event":"e","userId":"h","messageId":"m` + strconv.Itoa(i) + `"}`
			}
			return []byte(`{"batch":[` + strings.Join(items, ",") + `]}`)
		}, nil, 200},
	}
}

func rssBytes(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// T6: hostile requests, repeated while good clients send: each gets its
// clear 4xx with a JSON body, memory stays bounded, nothing acknowledged to
// the good clients is lost.
func TestT6HostileInputUnderLoad(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	ready := p.Find("ready", 30*time.Second)
	addr := ready["ingest"].(string)
	drv, stop := loadAgainst(t, dir, addr)
	defer stop()
	key := drv.writeKey
	rounds := 5
	if long() {
		rounds = 50
	}
	for range rounds {
		require.Empty(t, hostileMismatches(t, addr, key))
	}
	rss := rssBytes(t, p.Cmd.Process.Pid)
	t.Logf("RSS after %d hostile rounds under load: %d MiB", rounds, rss>>20)
	require.Less(t, rss, int64(1<<30), "memory bounded")
	stop()
	r := stopAndCheck(t, p, dir, drv)
	st, _, _, _ := drv.counts()
	require.Zero(t, st[500]+st[502]+st[504], "good clients saw server errors")
	require.Positive(t, r.Acked)
}

// hostileMismatches sends every hostile case once and returns a line per
// case whose answer was not the expected status with a JSON error body.
func hostileMismatches(t *testing.T, addr, key string) []string {
	var bad []string
	for _, hc := range hostileCases() {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/batch", bytes.NewReader(hc.body()))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(key+":")))
		for k, v := range hc.header {
			if v == "-" {
				req.Header.Del(k)
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", hc.name, err))
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != hc.want {
			bad = append(bad, fmt.Sprintf("%s: status %d, want %d: %.200s", hc.name, resp.StatusCode, hc.want, body))
			continue
		}
		var e struct{ Code, Error string }
		if hc.want >= 400 && (json.Unmarshal(body, &e) != nil || e.Code == "") {
			bad = append(bad, fmt.Sprintf("%s: no JSON error body: %.200s", hc.name, body))
		}
	}
	return bad
}

// Negative control for T6: without body limits the hostile table fails.
func TestT6CheckerCatchesMissingLimits(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.StartBinary(t, "clickpipe_broken_no_body_limit", dir)
	addr := p.Find("ready", 30*time.Second)["ingest"].(string)
	key, err := os.ReadFile(filepath.Join(dir, "dev-write-key"))
	require.NoError(t, err)
	bad := hostileMismatches(t, addr, strings.TrimSpace(string(key)))
	t.Logf("broken build mismatches: %q", bad)
	require.NotEmpty(t, bad, "the hostile-input checker did not notice missing body limits")
}

// T7: slowloris clients (headers trickled) and slow bodies are cut off
// within the server's timeouts while good clients keep being served, and
// the server's goroutines return to normal once they are gone.
func TestT7SlowClients(t *testing.T) {
	dir := t.TempDir()
	p := clickpipetest.Start(t, dir)
	ready := p.Find("ready", 30*time.Second)
	addr, query := ready["ingest"].(string), ready["query"].(string)
	baseline := goroutines(t, query)
	drv, stop := loadAgainst(t, dir, addr)
	defer stop()

	const n = 300
	conns := make([]net.Conn, 0, n)
	for i := range n {
		// From another address than the good clients (127.0.0.1): one
		// address holding 300 connections is past max_connections_per_ip,
		// which is the point; the good clients must not share its limit.
		c, err := dialFrom("127.0.0.2", addr)
		require.NoError(t, err)
		conns = append(conns, c)
		if i%2 == 0 { // slowloris: a partial header line
			_, _ = c.Write([]byte("POST /v1/batch HTTP/1.1\r\nHost: x\r\nX-Slow: "))
		} else { // slow body: headers complete, body never arrives
			_, _ = c.Write([]byte("POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"batch\":["))
		}
	}
	okBefore := status(drv, http.StatusOK)
	clickpipetest.Eventually(t, 10*time.Second, func() bool { return status(drv, http.StatusOK) > okBefore+10 },
		"good clients served while %d slow connections are open", n)

	// Every slow connection must be closed by the server within its read
	// timeouts (5 s for headers, 10 s for a body), never held forever. A
	// reset is a close too: connections past max_connections_per_ip are
	// closed at once, with their input unread.
	deadline := time.Now().Add(45 * time.Second)
	for _, c := range conns {
		_ = c.SetReadDeadline(deadline)
		_, err := io.ReadAll(c)
		if !errors.Is(err, syscall.ECONNRESET) {
			require.NoError(t, err, "server did not close a slow connection in time")
		}
		c.Close()
	}
	stop()
	clickpipetest.Eventually(t, 10*time.Second, func() bool { return goroutines(t, query) < baseline+50 },
		"goroutines back near the baseline of %d", baseline)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
}

func goroutines(t *testing.T, query string) int {
	body := metricsBody(t, query)
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	t.Fatal("no go_goroutines metric")
	return 0
}
