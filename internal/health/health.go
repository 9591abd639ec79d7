// Package health keeps the readiness checks of one clickpipe process and
// serves /healthz and /readyz from them.
package health

import (
	"net/http"
	"sort"
	"sync"

	"github.com/clickpipe/clickpipe/internal/httpx"
)

// Checks is a set of named readiness checks. The zero value is not ready
// until MarkStarted; MarkDraining makes it not ready again for good.
type Checks struct {
	mu       sync.Mutex
	checks   map[string]func() error
	warnings map[string]func() error
	started  bool
	draining bool
}

// New returns an empty set.
func New() *Checks {
	return &Checks{checks: map[string]func() error{}, warnings: map[string]func() error{}}
}

// Add registers a check; it must be cheap (it runs on every /readyz).
func (c *Checks) Add(name string, check func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks[name] = check
}

// AddWarning registers a check that is reported on /readyz ("warning: ...")
// without making the process not ready.
func (c *Checks) AddWarning(name string, check func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.warnings[name] = check
}

// MarkStarted records that every stage runs and ingest listens.
func (c *Checks) MarkStarted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started = true
}

// MarkDraining records that shutdown began.
func (c *Checks) MarkDraining() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
}

// Status is the /readyz body.
type Status struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// Status runs every check.
func (c *Checks) Status() Status {
	c.mu.Lock()
	names := make([]string, 0, len(c.checks))
	for n := range c.checks {
		names = append(names, n)
	}
	checks := make(map[string]func() error, len(c.checks))
	for n, f := range c.checks {
		checks[n] = f
	}
	warnings := make(map[string]func() error, len(c.warnings))
	for n, f := range c.warnings {
		warnings[n] = f
	}
	started, draining := c.started, c.draining
	c.mu.Unlock()
	sort.Strings(names)
	st := Status{Ready: started && !draining, Checks: map[string]string{}}
	switch {
	case draining:
		st.Checks["lifecycle"] = "draining"
	case !started:
		st.Checks["lifecycle"] = "starting"
	default:
		st.Checks["lifecycle"] = "ok"
	}
	for _, n := range names {
		if err := checks[n](); err != nil {
			st.Ready = false
			st.Checks[n] = err.Error()
		} else {
			st.Checks[n] = "ok"
		}
	}
	for n, f := range warnings {
		if err := f(); err != nil {
			st.Checks[n] = "warning: " + err.Error()
		} else {
			st.Checks[n] = "ok"
		}
	}
	return st
}

// Register mounts /healthz and /readyz on mux.
func (c *Checks) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := c.Status()
		code := http.StatusOK
		if !st.Ready {
			code = http.StatusServiceUnavailable
		}
		httpx.WriteJSON(w, code, st)
	})
}
