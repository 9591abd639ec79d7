package reliability

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

// dialFrom connects to addr from a given loopback source address, so that
// one test can play several clients (Linux routes all of 127/8 to lo).
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return d.Dial("tcp", addr)
}

// clientFrom is an HTTP client whose connections come from src.
func clientFrom(src string, timeout time.Duration) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// rawExchange writes req on a fresh connection from src and returns the
// status line of the answer, whether the server closed the connection
// afterwards, and how long the answer took.
func rawExchange(src, addr, req string, closeWrite bool, wait time.Duration) (string, bool, time.Duration, error) {
	c, err := dialFrom(src, addr)
	if err != nil {
		return "", false, 0, err
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, req); err != nil {
		return "", false, 0, err
	}
	if closeWrite {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", false, time.Since(start), err
	}
	took := time.Since(start)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	return resp.Status, err == io.EOF, took, nil
}

// slowProblems plays hostile and good clients against a node whose
// listener allows 200 connections, 40 per address, a 3 s body deadline,
// and lists what differs from the promise.
func slowProblems(t *testing.T, ingest, key string) []string {
	var bad []string
	// 250 connections from one address: headers and a partial body, no
	// credentials.
	var hostile []net.Conn
	for range 250 {
		c, err := dialFrom("127.0.0.2", ingest)
		if err != nil {
			continue
		}
		hostile = append(hostile, c)
		_, _ = io.WriteString(c, "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"batch\":[")
	}
	defer func() {
		for _, c := range hostile {
			c.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond)

	// A good client from another address is served at once.
	_, body := batch(7, 1, 5)
	req, _ := http.NewRequest(http.MethodPost, "http://"+ingest+"/v1/batch", bytes.NewReader(body))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(key+":")))
	if resp, err := clientFrom("127.0.0.3", 2*time.Second).Do(req); err != nil {
		bad = append(bad, fmt.Sprintf("good client not served while one address holds slow bodies: %v", err))
	} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
		bad = append(bad, fmt.Sprintf("good client answered %d", resp.StatusCode))
	}
	// The ingest listener's readiness probe answers.
	if resp, err := clientFrom("127.0.0.4", 2*time.Second).Get("http://" + ingest + "/readyz"); err != nil {
		bad = append(bad, fmt.Sprintf("ingest /readyz does not answer: %v", err))
	} else {
		resp.Body.Close()
	}
	// Bad credentials in the header are refused before the body.
	status, _, took, err := rawExchange("127.0.0.5", ingest, "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "+
		base64.StdEncoding.EncodeToString([]byte("wrong-key:"))+"\r\nContent-Length: 100000\r\n\r\n", false, 2*time.Second)
	if err != nil || !strings.HasPrefix(status, "401") || took > time.Second {
		bad = append(bad, fmt.Sprintf("bad credentials with a pending body: %q after %s (%v), want 401 at once", status, took, err))
	}
	// A body shorter than its Content-Length: 408 and close, whether the
	// client waits or closes its side.
	short := "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + base64.StdEncoding.EncodeToString([]byte(key+":")) +
		"\r\nContent-Length: 1000\r\n\r\n{\"batch\":["
	for _, half := range []bool{false, true} {
		status, closed, took, err := rawExchange("127.0.0.6", ingest, short, half, 6*time.Second)
		if err != nil || !strings.HasPrefix(status, "408") || !closed {
			bad = append(bad, fmt.Sprintf("short body (client closes: %v): %q closed=%v after %s (%v), want 408 and close", half, status, closed, took, err))
		}
	}
	// Content-Length and Transfer-Encoding together: refused, closed.
	both := "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + base64.StdEncoding.EncodeToString([]byte(key+":")) +
		"\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	status, closed, _, err := rawExchange("127.0.0.7", ingest, both, false, 3*time.Second)
	if err != nil || !strings.HasPrefix(status, "400") || !closed {
		bad = append(bad, fmt.Sprintf("Content-Length with Transfer-Encoding: %q closed=%v (%v), want 400 and close", status, closed, err))
	}
	// The slow bodies are cut off by the body deadline.
	deadline := time.Now().Add(6 * time.Second)
	open := 0
	for _, c := range hostile {
		_ = c.SetReadDeadline(deadline)
		var ne net.Error
		if _, err := io.ReadAll(c); errors.As(err, &ne) && ne.Timeout() {
			open++ // a reset (closed at once, unread input) is closed too
		}
	}
	if open > 0 {
		bad = append(bad, fmt.Sprintf("%d slow-body connections still open past the body deadline", open))
	}
	return bad
}

func slowNode(t *testing.T, tags string) (*clickpipetest.Proc, string) {
	p := clickpipetest.StartWith(t, tags, t.TempDir(), []string{"--config", twoSourceConfig(t)},
		"CLICKPIPE_INGEST_MAX_CONNECTIONS=200", "CLICKPIPE_INGEST_MAX_CONNECTIONS_PER_IP=40",
		"CLICKPIPE_INGEST_HEALTH_RESERVE=8", "CLICKPIPE_INGEST_BODY_TIMEOUT=3s")
	return p, p.Find("ready", 30*time.Second)["ingest"].(string)
}

// T7 (issue 12): one address holding slow unauthenticated bodies cannot
// starve other clients or the health probe; short bodies, bad credentials
// and ambiguous framing get clean, prompt answers.
func TestSlowUnauthenticatedClients(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	p, addr := slowNode(t, "")
	require.Empty(t, slowProblems(t, addr, keyWeb))
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	exit, _ := p.Wait(30 * time.Second)
	require.Equal(t, 0, exit)
}

// Negative control: the bare global connection cap fails the checker.
func TestSlowClientCheckerCatchesPlainListener(t *testing.T) {
	t.Parallel() // mostly waits: runs beside the other waiting tests (check_test.go)
	_, addr := slowNode(t, "clickpipe_broken_plain_listener")
	bad := slowProblems(t, addr, keyWeb)
	t.Logf("broken build: %q", bad)
	require.NotEmpty(t, bad)
}
