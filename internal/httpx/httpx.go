// Package httpx holds the small HTTP pieces both listeners need: a server
// with every timeout set, a connection-limited listener, bearer-token auth
// and the JSON error body.
package httpx

import (
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Timeouts bounds how long a client may hold a connection at each stage.
type Timeouts struct {
	ReadHeader time.Duration
	Read       time.Duration
	Write      time.Duration
	Idle       time.Duration
	// MaxHeaderBytes caps request headers.
	MaxHeaderBytes int
}

// DefaultTimeouts suit short API requests. Streaming endpoints (server-sent
// events) clear their own write deadline with http.ResponseController.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		ReadHeader:     5 * time.Second,
		Read:           30 * time.Second,
		Write:          30 * time.Second,
		Idle:           60 * time.Second,
		MaxHeaderBytes: 32 << 10,
	}
}

// NewServer returns an http.Server with every timeout and MaxHeaderBytes
// set.
func NewServer(h http.Handler, t Timeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    t.MaxHeaderBytes,
	}
}

// LimitListener accepts at most n simultaneous connections; further
// clients wait in the kernel's backlog instead of exhausting descriptors.
func LimitListener(l net.Listener, n int) net.Listener {
	if n <= 0 {
		return l
	}
	return &limitListener{Listener: l, sem: make(chan struct{}, n)}
}

type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Error is the JSON body of every error response: a stable machine code
// and a human message.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"error"`
}

// WriteError writes status with an Error body.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Error{Code: code, Message: msg})
}

// WriteJSON writes v as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// RequireBearer lets a request through only with "Authorization: Bearer T"
// for one of tokens, compared in constant time; otherwise 401.
func RequireBearer(tokens []string, next http.Handler) http.Handler {
	keys := make([][]byte, len(tokens))
	for i, t := range tokens {
		keys[i] = []byte(t)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ok && tokenMatches(keys, []byte(strings.TrimSpace(got))) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="clickpipe"`)
		WriteError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid bearer token")
	})
}

func tokenMatches(keys [][]byte, got []byte) bool {
	match := 0
	for _, k := range keys {
		match |= subtle.ConstantTimeCompare(k, got)
	}
	return match == 1 && len(got) > 0
}

// BearerName is the name of the token of named (name -> token) that the
// request's "Authorization: Bearer T" carries, compared in constant time
// against every token; ok is false without a match.
func BearerName(named map[string]string, r *http.Request) (name string, ok bool) {
	got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	got = strings.TrimSpace(got)
	if !found || got == "" {
		return "", false
	}
	for n, t := range named {
		if subtle.ConstantTimeCompare([]byte(t), []byte(got)) == 1 {
			name, ok = n, true
		}
	}
	return name, ok
}

// Unauthorized answers 401 with the bearer challenge.
func Unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="clickpipe"`)
	WriteError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid bearer token")
}
