package httpx

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync"
)

// ConnLimits bound the connections of one listener.
type ConnLimits struct {
	// Max is the total of simultaneous connections (0: unlimited); past
	// it clients wait in the kernel's backlog.
	Max int
	// Reserve of the Max connections serve only the paths given to
	// GuardReserved (health probes), so that probes are answered while
	// clients hold every other connection.
	Reserve int
	// PerIP bounds the simultaneous connections of one peer address (0:
	// unlimited); a connection past it is closed at once.
	PerIP int
	// Exempt peers (trusted proxies, which carry many clients) have no
	// per-address bound.
	Exempt []netip.Prefix
	// Rejected, when set, is called for every connection closed by PerIP.
	Rejected func()
	// RecordBytes keeps the last bytes read on each connection for
	// HeaderBlock (0: none).
	RecordBytes int
}

// GuardedListener applies ConnLimits; serve it with an http.Server whose
// ConnContext is GuardedListener.ConnContext.
type GuardedListener struct {
	net.Listener
	lim   ConnLimits
	sem   chan struct{}
	mu    sync.Mutex
	perIP map[netip.Addr]int
}

// Guard wraps l with lim.
func Guard(l net.Listener, lim ConnLimits) *GuardedListener {
	g := &GuardedListener{Listener: l, lim: lim, perIP: map[netip.Addr]int{}}
	if lim.Max > 0 {
		g.sem = make(chan struct{}, lim.Max)
	}
	return g
}

// Accept waits for a global slot, then closes connections of peers past
// their per-address bound and returns the next acceptable one.
func (g *GuardedListener) Accept() (net.Conn, error) {
	for {
		if g.sem != nil {
			g.sem <- struct{}{}
		}
		c, err := g.Listener.Accept()
		if err != nil {
			g.release()
			return nil, err
		}
		addr := peerAddr(c.RemoteAddr())
		if !g.take(addr) {
			_ = c.Close()
			g.release()
			if g.lim.Rejected != nil {
				g.lim.Rejected()
			}
			continue
		}
		return &GuardedConn{Conn: c, g: g, addr: addr, reserved: g.inReserve(), record: g.lim.RecordBytes}, nil
	}
}

// inReserve reports whether the connection just admitted holds one of the
// reserved slots.
func (g *GuardedListener) inReserve() bool {
	return g.sem != nil && g.lim.Reserve > 0 && len(g.sem) > g.lim.Max-g.lim.Reserve
}

func (g *GuardedListener) release() {
	if g.sem != nil {
		<-g.sem
	}
}

func (g *GuardedListener) take(a netip.Addr) bool {
	if g.lim.PerIP <= 0 || !a.IsValid() || exempt(a, g.lim.Exempt) {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perIP[a] >= g.lim.PerIP {
		return false
	}
	g.perIP[a]++
	return true
}

func (g *GuardedListener) drop(a netip.Addr) {
	if g.lim.PerIP <= 0 || !a.IsValid() || exempt(a, g.lim.Exempt) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perIP[a]--; g.perIP[a] <= 0 {
		delete(g.perIP, a)
	}
}

func exempt(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peerAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// GuardedConn is a connection accepted by a GuardedListener.
type GuardedConn struct {
	net.Conn
	g        *GuardedListener
	addr     netip.Addr
	reserved bool
	once     sync.Once

	record int // bytes of ring, 0: no recording

	mu   sync.Mutex
	ring []byte // the last bytes read, at most record; allocated on first use
	lost bool   // bytes fell out of ring since the last HeaderBlock
}

func (c *GuardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.record > 0 {
		c.keep(p[:n])
	}
	return n, err
}

func (c *GuardedConn) keep(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ring == nil {
		c.ring = make([]byte, 0, c.record)
	}
	max := c.record
	if len(c.ring)+len(b) > max {
		c.lost = true
		keep := max - min(len(b), max)
		c.ring = append(c.ring[:0], c.ring[len(c.ring)-min(keep, len(c.ring)):]...)
		b = b[len(b)-min(len(b), max):]
	}
	c.ring = append(c.ring, b...)
}

// Close releases the connection's slots once.
func (c *GuardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.g.drop(c.addr)
		c.g.release()
	})
	return err
}

// Reserved reports whether the connection holds a reserved slot.
func (c *GuardedConn) Reserved() bool { return c.reserved }

// HeaderBlock returns the raw header block of the request whose request
// line is line (for example "POST /v1/batch HTTP/1.1") from the recorded
// bytes, the last occurrence, and forgets the recording up to its end.
// False when it is not (or no longer entirely) recorded.
func (c *GuardedConn) HeaderBlock(line string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := bytes.LastIndex(c.ring, []byte(line+"\r\n"))
	if i < 0 || (i == 0 && c.lost) {
		return nil, false
	}
	rest := c.ring[i:]
	end := bytes.Index(rest, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, false
	}
	block := bytes.Clone(rest[:end+2])
	c.ring = append(c.ring[:0], rest[end+4:]...)
	c.lost = false
	return block, true
}

type connKey struct{}

// ConnContext stores the connection in the request context (use it as
// http.Server.ConnContext).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if gc, ok := c.(*GuardedConn); ok {
		return context.WithValue(ctx, connKey{}, gc)
	}
	return ctx
}

// ConnOf returns the request's guarded connection, nil when it has none.
func ConnOf(r *http.Request) *GuardedConn {
	gc, _ := r.Context().Value(connKey{}).(*GuardedConn)
	return gc
}

// GuardReserved answers requests on reserved connections with 503 and
// closes them, except for the paths in allow (health probes).
func GuardReserved(allow []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := ConnOf(r); c != nil && c.Reserved() {
			ok := false
			for _, p := range allow {
				ok = ok || r.URL.Path == p
			}
			if !ok {
				w.Header().Set("Connection", "close")
				w.Header().Set("Retry-After", "1")
				WriteError(w, http.StatusServiceUnavailable, "busy", "server at its connection limit; this connection is reserved for health probes")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
