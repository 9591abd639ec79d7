package archive_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Fault modes of the proxy.
const (
	faultNone    = iota
	faultRefuse  // the port is closed: connection refused
	faultHalf5xx // every other request (at random) gets 503 SlowDown
	faultSlow    // every request waits before it is forwarded
	faultReset   // uploads are cut off (TCP reset) after part of the body
)

// faultProxy is a reverse proxy in front of an S3 server that fails on
// command. Only for fault injection.
type faultProxy struct {
	t      testing.TB
	addr   string
	target *url.URL
	mode   atomic.Int32
	hits   atomic.Int64 // requests failed on purpose

	mu  sync.Mutex
	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	u, err := url.Parse("http://" + target)
	require.NoError(t, err)
	p := &faultProxy{t: t, target: u, addr: freePort(t)}
	p.listen()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) listen() {
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly after a close
		if ln, err = net.Listen("tcp", p.addr); err == nil {
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

func (p *faultProxy) close() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	p.wg.Wait()
}

// set switches the fault mode; refuse closes the port, leaving it reopens.
func (p *faultProxy) set(mode int32) {
	old := p.mode.Swap(mode)
	switch {
	case mode == faultRefuse && old != faultRefuse:
		p.close()
	case old == faultRefuse && mode != faultRefuse:
		p.listen()
	}
}

func (p *faultProxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p.mode.Load() {
		case faultHalf5xx:
			if rand.IntN(2) == 0 {
				p.hits.Add(1)
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>`)
				return
			}
		case faultSlow:
			p.hits.Add(1)
			select {
			case <-time.After(700 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		case faultReset:
			if r.Method == http.MethodPut && r.ContentLength > 64 {
				p.hits.Add(1)
				_, _ = io.CopyN(io.Discard, r.Body, r.ContentLength/2)
				p.reset(w)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// reset aborts the connection with a TCP RST.
func (p *faultProxy) reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(errors.Join(errors.New("fault proxy: hijack"), err))
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
