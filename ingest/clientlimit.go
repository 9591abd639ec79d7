package ingest

import (
	"bytes"
	"net/http"
	"sync"
	"time"

	"github.com/clickpipe/clickpipe/internal/httpx"
)

// ipGate counts the requests in flight per client address.
type ipGate struct {
	max int // 0: unlimited
	mu  sync.Mutex
	n   map[string]int
}

func newIPGate(max int) *ipGate { return &ipGate{max: max, n: map[string]int{}} }

// enter registers a request of ip; false when ip is at its bound.
func (g *ipGate) enter(ip string) bool {
	if g.max <= 0 {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n[ip] >= g.max {
		return false
	}
	g.n[ip]++
	return true
}

func (g *ipGate) leave(ip string) {
	if g.max <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n[ip]--; g.n[ip] <= 0 {
		delete(g.n, ip)
	}
}

// guardBody prepares reading a request body: a body deadline from now, and
// refusal of a request that carried both Content-Length and
// Transfer-Encoding (net/http drops the Content-Length, but a proxy in
// front may have used it: request smuggling). The raw header block comes
// from the connection's recording; a chunked request whose headers cannot
// be verified is refused too.
func (in *Ingest) guardBody(w http.ResponseWriter, r *http.Request) error {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(in.cfg.BodyTimeout))
	if len(r.TransferEncoding) == 0 {
		return nil
	}
	c := httpx.ConnOf(r)
	if c == nil {
		return nil // not served by the guarded listener (tests)
	}
	block, ok := c.HeaderBlock(r.Method + " " + r.RequestURI + " " + r.Proto)
	if !ok || hasHeader(block, "content-length") {
		return ErrAmbiguousLen
	}
	return nil
}

// hasHeader reports whether a raw header block has a field named name
// (lower case).
func hasHeader(block []byte, name string) bool {
	for _, line := range bytes.Split(block, []byte("\r\n")) {
		k, _, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte(name)) {
			return true
		}
	}
	return false
}
