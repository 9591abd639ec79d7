// Package loadgen generates realistic streaming-service clickstream
// traffic (a seeded population of subscribers browsing and watching) and
// sends it to a Segment-compatible tracking API exactly as the SDKs do,
// open loop at a target rate profile or closed loop, with SDK-like retries,
// live progress, a final report and an fsynced witness of acknowledged ids.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load-generator run.
type Config struct {
	// Target is the tracking API's base URL, e.g. http://127.0.0.1:8080.
	Target string
	// Targets, when set, spread the connections over several tracking
	// APIs as a load balancer in front of cluster nodes would: connection
	// i sends to Targets[i%len(Targets)], and Target is not used.
	Targets  []string
	WriteKey string
	Shape    Shape
	Gzip     bool
	// BatchSize is the events per batch request (SDK flushAt).
	BatchSize int
	// FlushInterval bounds how long events wait for a batch at low rates.
	FlushInterval time.Duration
	// Connections is the number of concurrent senders (and HTTP
	// connections); each owns one shard of the population.
	Connections int
	Profile     Profile
	// Duration is how long new requests are started; in-flight ones then
	// get up to DrainTimeout to finish their retries.
	Duration     time.Duration
	DrainTimeout time.Duration
	// MaxEvents stops after this many events (0: no limit).
	MaxEvents int64
	// MaxRetries per request for retryable answers (SDK default 10).
	MaxRetries int
	// MaxRetryAfter caps a server's Retry-After (the SDKs cap at 300 s).
	MaxRetryAfter  time.Duration
	RequestTimeout time.Duration
	// Witness, when set, is a file that receives every acknowledged
	// messageId, fsynced before the event counts as acknowledged.
	Witness string
	// HostileShare is the share of extra malformed requests (soak tests).
	HostileShare float64
	Population   Population
	// Progress receives a status line every second; nil for none.
	Progress io.Writer
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Target: "http://127.0.0.1:8080", Shape: ShapeNode, BatchSize: 100, FlushInterval: time.Second,
		Connections: 32, Duration: 30 * time.Second, DrainTimeout: 30 * time.Second,
		MaxRetries: 10, MaxRetryAfter: 30 * time.Second, RequestTimeout: 30 * time.Second,
		Population: DefaultPopulation(),
	}
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	errs := []error{c.Shape.Validate(), c.Profile.Validate()}
	if c.Population.Validate() != nil {
		errs = append(errs, fmt.Errorf("population: %w", c.Population.Validate()))
	}
	for _, t := range c.targets() {
		if !strings.HasPrefix(t, "http://") && !strings.HasPrefix(t, "https://") {
			errs = append(errs, fmt.Errorf("target %q: not an http(s) URL", t))
		}
	}
	if c.BatchSize < 1 || c.BatchSize > 2500 {
		errs = append(errs, fmt.Errorf("batch size %d: outside 1..2500", c.BatchSize))
	}
	if c.Connections < 1 || c.Connections > 4096 {
		errs = append(errs, fmt.Errorf("connections %d: outside 1..4096", c.Connections))
	}
	if c.Duration <= 0 || c.DrainTimeout < 0 {
		errs = append(errs, errors.New("duration: must be positive (every run is bounded in time)"))
	}
	if c.MaxRetries < 0 || c.HostileShare < 0 || c.HostileShare > 1 {
		errs = append(errs, errors.New("max retries and hostile share: out of range"))
	}
	return errors.Join(errs...)
}

// targets are the base URLs the connections send to, in turn.
func (c Config) targets() []string {
	if len(c.Targets) > 0 {
		return c.Targets
	}
	return []string{c.Target}
}

// Report is the outcome of a run.
type Report struct {
	Mode        string  `json:"mode"`
	Target      string  `json:"target"`
	Shape       Shape   `json:"shape"`
	Connections int     `json:"connections"`
	BatchSize   int     `json:"batch_size"`
	Seconds     float64 `json:"seconds"`
	// TargetEvents is what the open-loop profile scheduled over the run;
	// fewer sent means the connections could not keep up.
	TargetEvents   int64            `json:"target_events,omitempty"`
	EventsSent     int64            `json:"events_sent"`
	EventsAcked    int64            `json:"events_acked"`
	EventsFailed   int64            `json:"events_failed"`
	Requests       int64            `json:"requests"`
	RequestsAcked  int64            `json:"requests_acked"`
	Retries        int64            `json:"retries"`
	EventsPerSec   float64          `json:"events_per_sec"`
	RequestsPerSec float64          `json:"requests_per_sec"`
	Latency        Percentiles      `json:"latency"`
	EndToEnd       Percentiles      `json:"end_to_end"`
	Status         map[string]int64 `json:"status"`
	Hostile        int64            `json:"hostile_requests,omitempty"`
	HostileStatus  map[string]int64 `json:"hostile_status,omitempty"`
	// EventsClamped were stamped with the wall clock because their
	// simulated time was ahead of it and every user was busy (see
	// Population.Accelerated); many mean too few users for the rate.
	EventsClamped uint64    `json:"events_clamped,omitempty"`
	SimStart      time.Time `json:"sim_start"`
	SimEnd        time.Time `json:"sim_end"`
	Witness       string    `json:"witness,omitempty"`
}

// Runner sends one run's traffic.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	client  *http.Client
	auth    string
	lib     Library
	pacer   *Pacer
	witness *Witness
	c       counters

	budgetMu sync.Mutex
	budget   int64 // events still allowed under MaxEvents

	simMu            sync.Mutex
	simStart, simEnd time.Time
}

// New validates cfg; it opens nothing.
func New(cfg Config, log *slog.Logger) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Connections * 2,
		MaxIdleConnsPerHost: cfg.Connections * 2,
		MaxConnsPerHost:     cfg.Connections * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	r := &Runner{cfg: cfg, log: log, auth: basicAuth(cfg.WriteKey), lib: cfg.Shape.Library(),
		client: &http.Client{Transport: tr, Timeout: cfg.RequestTimeout}, budget: cfg.MaxEvents}
	if cfg.Profile.Open() {
		r.pacer = NewPacer(cfg.Profile, cfg.BatchSize, cfg.FlushInterval)
	}
	return r, nil
}

// Run sends traffic until Duration or MaxEvents, waits for in-flight
// requests (bounded by DrainTimeout) and reports.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	defer r.client.CloseIdleConnections()
	if r.cfg.Witness != "" {
		w, err := OpenWitness(r.cfg.Witness)
		if err != nil {
			return nil, err
		}
		r.witness = w
	}
	gens := make([]*Generator, r.cfg.Connections)
	for i := range gens {
		g, err := NewGenerator(r.cfg.Population, r.lib, i, len(gens))
		if err != nil {
			return nil, err
		}
		gens[i] = g
	}
	start := time.Now()
	sendCtx, cancelSend := context.WithTimeout(ctx, r.cfg.Duration+r.cfg.DrainTimeout)
	defer cancelSend()
	genCtx, cancelGen := context.WithTimeout(sendCtx, r.cfg.Duration)
	defer cancelGen()
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() { defer close(progressDone); r.progress(start, stopProgress) }()
	var wg sync.WaitGroup
	errs := make([]error, len(gens))
	for i, g := range gens {
		wg.Go(func() { errs[i] = r.worker(genCtx, sendCtx, g, i) })
	}
	wg.Wait()
	close(stopProgress)
	<-progressDone
	rep := r.report(time.Since(start))
	for _, g := range gens {
		rep.EventsClamped += g.Clamped()
	}
	if rep.EventsClamped > 0 {
		r.log.Warn("simulated time reached the wall clock with every user in a session; events stamped with the wall clock",
			"clamped", rep.EventsClamped, "users", r.cfg.Population.Users)
	}
	var werr error
	if r.witness != nil {
		werr = r.witness.Close()
	}
	return rep, errors.Join(append(errs, werr)...)
}

// take reserves up to n events of the MaxEvents budget.
func (r *Runner) take(n int) int {
	if r.cfg.MaxEvents <= 0 {
		return n
	}
	r.budgetMu.Lock()
	defer r.budgetMu.Unlock()
	n = int(min(int64(n), r.budget))
	r.budget -= int64(n)
	return n
}

func (r *Runner) worker(genCtx, sendCtx context.Context, g *Generator, shard int) error {
	enc := newEncoder(r.cfg.Shape, r.cfg.WriteKey, r.cfg.Gzip, shard)
	targets := r.cfg.targets()
	target := targets[shard%len(targets)]
	rng := rand.New(rand.NewSource(r.cfg.Population.Seed + int64(shard)*7919))
	var req request
	var ids []byte
	for genCtx.Err() == nil {
		n, intended := r.cfg.BatchSize, time.Time{}
		if r.pacer != nil {
			var err error
			if intended, n, err = r.pacer.Wait(genCtx); err != nil {
				break
			}
		}
		if r.cfg.Shape.single() {
			n = 1
		}
		if n = r.take(n); n == 0 {
			break
		}
		if r.cfg.HostileShare > 0 && rng.Float64() < r.cfg.HostileShare {
			r.hostile(sendCtx, rng)
		}
		now := time.Now()
		if intended.IsZero() {
			intended = now
		}
		enc.build(g, n, now, &req)
		req.intended, req.target = intended, target
		r.noteSim(g.now.time())
		r.c.sentEvents.Add(int64(req.events))
		if err := r.send(sendCtx, &req); err != nil {
			r.c.failedEvents.Add(int64(req.events))
			continue
		}
		if r.witness != nil {
			ids = ids[:0]
			for s := req.first; s <= req.last; s++ {
				ids = append(g.AppendMessageID(ids, s), '\n')
			}
			if err := r.witness.Record(ids); err != nil {
				return err
			}
		}
		r.c.ackedEvents.Add(int64(req.events))
		r.c.ackedRequests.Add(1)
		r.c.e2e.observe(time.Since(req.intended))
	}
	return nil
}

func (r *Runner) noteSim(t time.Time) {
	r.simMu.Lock()
	if r.simStart.IsZero() || t.Before(r.simStart) {
		r.simStart = t
	}
	if t.After(r.simEnd) {
		r.simEnd = t
	}
	r.simMu.Unlock()
}

var errDropped = errors.New("loadgen: request dropped")

// send posts req until it is acknowledged, dropped (non-retryable status,
// retries exhausted) or ctx ends. Every attempt sends the same bytes.
func (r *Runner) send(ctx context.Context, req *request) error {
	for attempt := 0; ; attempt++ {
		status, wait, err := r.attempt(ctx, req, attempt)
		switch {
		case err == nil && status < 400:
			return nil
		case !retryable(status) || attempt >= r.cfg.MaxRetries:
			return fmt.Errorf("%w: status %d after %d attempts", errDropped, status, attempt+1)
		}
		if wait <= 0 {
			wait = backoff(attempt)
		}
		r.c.retries.Add(1)
		t := time.NewTimer(min(wait, r.cfg.MaxRetryAfter))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// attempt sends once; status 0 means a network error.
func (r *Runner) attempt(ctx context.Context, req *request, attempt int) (int, time.Duration, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, req.target+req.path, bytes.NewReader(req.body))
	if err != nil {
		return 0, 0, fmt.Errorf("building request: %w", err)
	}
	hr.Header.Set("Authorization", r.auth)
	hr.Header.Set("Content-Type", req.contentType)
	hr.Header.Set("User-Agent", r.lib.UserAgent)
	if req.gzip {
		hr.Header.Set("Content-Encoding", "gzip")
	}
	if attempt > 0 {
		hr.Header.Set("X-Retry-Count", strconv.Itoa(attempt))
	}
	r.c.requests.Add(1)
	t0 := time.Now()
	resp, err := r.client.Do(hr)
	if err != nil {
		r.c.netErrors.Add(1)
		return 0, 0, fmt.Errorf("posting: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	r.c.attempt.observe(time.Since(t0))
	r.c.status[min(resp.StatusCode, 599)].Add(1)
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After")), nil
}

// retryable follows the Segment SDKs: network errors, 408/410/429/460 and
// 5xx except 501 and 505.
func retryable(status int) bool {
	switch status {
	case 0, 408, 410, 429, 460:
		return true
	case 501, 505:
		return false
	}
	return status >= 500
}

// retryAfter parses delta-seconds (at least 1 s, like analytics-node).
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	s, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || s < 0 {
		return 0
	}
	return max(time.Duration(s)*time.Second, time.Second)
}

// backoff is exponential from 100 ms, capped at 5 s.
func backoff(attempt int) time.Duration {
	return min(100*time.Millisecond<<min(attempt, 6), 5*time.Second)
}

func (r *Runner) report(elapsed time.Duration) *Report {
	mode := "closed-loop"
	if r.pacer != nil {
		mode = "open-loop"
	}
	rep := &Report{
		Mode: mode, Target: strings.Join(r.cfg.targets(), ","), Shape: r.cfg.Shape, Connections: r.cfg.Connections,
		BatchSize: r.cfg.BatchSize, Seconds: elapsed.Seconds(),
		EventsSent: r.c.sentEvents.Load(), EventsAcked: r.c.ackedEvents.Load(), EventsFailed: r.c.failedEvents.Load(),
		Requests: r.c.requests.Load(), RequestsAcked: r.c.ackedRequests.Load(), Retries: r.c.retries.Load(),
		Latency: percentiles(r.c.attempt.snapshot()), EndToEnd: percentiles(r.c.e2e.snapshot()),
		Status: statusMap(&r.c.status, r.c.netErrors.Load()), Hostile: r.c.hostile.Load(),
		SimStart: r.simStart, SimEnd: r.simEnd, Witness: r.cfg.Witness,
	}
	if r.pacer != nil {
		rep.TargetEvents = int64(r.cfg.Profile.Events(r.cfg.Duration))
	}
	if rep.Hostile > 0 {
		rep.HostileStatus = statusMap(&r.c.hostileStatus, 0)
	}
	if s := elapsed.Seconds(); s > 0 {
		rep.EventsPerSec = float64(rep.EventsAcked) / s
		rep.RequestsPerSec = float64(rep.Requests) / s
	}
	return rep
}

func statusMap(a *[600]atomic.Int64, netErrors int64) map[string]int64 {
	m := map[string]int64{}
	for i := range a {
		if v := a[i].Load(); v > 0 {
			m[strconv.Itoa(i)] = v
		}
	}
	if netErrors > 0 {
		m["net"] = netErrors
	}
	return m
}
