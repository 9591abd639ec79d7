package cluster

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultProxy forwards TCP connections to a node's route port. Blackhole
// stops moving bytes (connections stay open, new ones are accepted and
// held), Reset closes every connection, Heal forwards again; a delay holds
// every chunk that long after it was read before passing it on (latency,
// not a bandwidth limit: chunks read meanwhile are not held up further).
type faultProxy struct {
	ln     net.Listener
	target string
	hole   atomic.Bool
	delay  atomic.Int64 // nanoseconds
	mu     sync.Mutex
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
	healed chan struct{}
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, conns: map[net.Conn]bool{}, healed: make(chan struct{})}
	close(p.healed)
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *faultProxy) serve(c net.Conn) {
	p.track(c, true)
	defer p.track(c, false)
	p.waitHealed()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.track(up, true)
	defer p.track(up, false)
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(up, c) })
	wg.Go(func() { p.pipe(c, up) })
	wg.Wait()
}

// pipe copies src to dst in chunks, each held until the delay set when it
// was read has passed, and a blackhole waited out before each write.
func (p *faultProxy) pipe(dst, src net.Conn) {
	defer func() { _ = dst.Close(); _ = src.Close() }()
	type chunk struct {
		b   []byte
		due time.Time
	}
	chunks := make(chan chunk, 64)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case chunks <- chunk{buf[:n], time.Now().Add(time.Duration(p.delay.Load()))}:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		time.Sleep(time.Until(c.due))
		p.waitHealed()
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// setDelay makes every chunk wait d before it is passed on (0: none).
func (p *faultProxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *faultProxy) waitHealed() {
	p.mu.Lock()
	ch := p.healed
	p.mu.Unlock()
	<-ch
}

func (p *faultProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
		_ = c.Close()
	}
}

// blackhole stops forwarding; bytes wait until heal (or reset).
func (p *faultProxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hole.CompareAndSwap(false, true) {
		p.healed = make(chan struct{})
	}
}

// heal forwards again.
func (p *faultProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hole.CompareAndSwap(true, false) {
		close(p.healed)
	}
}

// reset closes every connection through the proxy.
func (p *faultProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *faultProxy) close() {
	_ = p.ln.Close()
	p.heal()
	p.reset()
	p.wg.Wait()
}

// newDeadEnd is a listener that closes every connection it accepts: the
// address every node advertises, so that a peer that learns of it through
// the route gossip cannot route to it around the fault proxies.
func newDeadEnd(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}
