package httpx

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func dialFrom(t *testing.T, src, addr string) net.Conn {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
	c, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGuardLimitsPerAddressAndReserves(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rejected := 0
	g := Guard(ln, ConnLimits{Max: 4, Reserve: 1, PerIP: 2, Rejected: func() { rejected++ }})
	defer g.Close()
	accepted := make(chan *GuardedConn, 8)
	go func() {
		for {
			c, err := g.Accept()
			if err != nil {
				return
			}
			accepted <- c.(*GuardedConn)
		}
	}()
	addr := ln.Addr().String()
	a1, a2 := dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr)
	_, _ = a1, a2
	c1, c2 := <-accepted, <-accepted
	require.False(t, c1.Reserved() || c2.Reserved())

	// A third connection from the same address is closed at once.
	a3 := dialFrom(t, "127.0.0.2", addr)
	_ = a3.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = io.ReadAll(a3)
	var ne net.Error
	require.False(t, err != nil && errorsAsTimeout(err, &ne), "closed, not held")

	// Another address gets the last normal slot, then the reserved one.
	dialFrom(t, "127.0.0.3", addr)
	require.False(t, (<-accepted).Reserved())
	dialFrom(t, "127.0.0.4", addr)
	require.True(t, (<-accepted).Reserved(), "the last slot is the health-probe reserve")
	require.Equal(t, 1, rejected)

	// Closing frees the address's count.
	require.NoError(t, c1.Close())
	dialFrom(t, "127.0.0.2", addr)
	select {
	case <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("a freed per-address slot was not reused")
	}
}

func errorsAsTimeout(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	*ne = e
	return ok && e.Timeout()
}

func TestHeaderBlockFindsTheRequestsHeaders(t *testing.T) {
	c := &GuardedConn{record: 64}
	c.keep([]byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))
	c.keep([]byte("POST /v1/b HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"))
	block, ok := c.HeaderBlock("POST /v1/b HTTP/1.1")
	require.True(t, ok)
	require.Contains(t, string(block), "Content-Length: 4")
	_, ok = c.HeaderBlock("POST /v1/b HTTP/1.1")
	require.False(t, ok, "consumed")

	big := &GuardedConn{record: 16}
	big.keep([]byte("POST /v1/b HTTP/1.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n"))
	_, ok = big.HeaderBlock("POST /v1/b HTTP/1.1")
	require.False(t, ok, "headers larger than the recording cannot be verified")
}
