package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clickpipe/clickpipe/loadgen"
)

// Machine names the hardware.
type Machine struct {
	CPUs   int     `json:"cpus"`
	Model  string  `json:"model"`
	MemGiB float64 `json:"mem_gib"`
	Host   string  `json:"host"`
}

// Stat is the median and range of one figure over runs.
type Stat struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

// MarshalJSON writes null for a figure that was not measured.
func (s Stat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(s.Median) {
		return []byte("null"), nil
	}
	type plain Stat
	return json.Marshal(plain(s))
}

func stat(v []float64) Stat {
	if len(v) == 0 {
		return Stat{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: med, Min: s[0], Max: s[len(s)-1], Runs: v}
}

// Row is one line of a results table: a named case and its figures.
type Row struct {
	Case    string          `json:"case"`
	Figures map[string]Stat `json:"figures"`
	Order   []string        `json:"-"`
}

type results struct {
	Machine  Machine          `json:"machine"`
	Mode     string           `json:"mode"`
	Runs     int              `json:"runs"`
	Started  time.Time        `json:"started"`
	Tables   map[string][]Row `json:"tables"`
	Notes    []string         `json:"notes,omitempty"`
	Profiles []Profile        `json:"profiles,omitempty"`
	Commands []string         `json:"commands"`
}

type suite struct {
	o    *options
	res  *results
	bin  string
	ceil map[string]map[int]float64 // durability -> message size -> median MiB/s
}

// ceilingAt is the ceiling MiB/s of the measured size nearest (log scale)
// to size, or 0 when the ceiling was not measured.
func (s *suite) ceilingAt(dur string, size float64) float64 {
	best, dist := 0.0, math.Inf(1)
	for sz, v := range s.ceil[dur] {
		if d := math.Abs(math.Log(float64(sz) / size)); d < dist {
			best, dist = v, d
		}
	}
	return best
}

func (s *suite) add(table string, r Row) {
	if s.res.Tables == nil {
		s.res.Tables = map[string][]Row{}
	}
	s.res.Tables[table] = append(s.res.Tables[table], r)
	fmt.Fprintf(os.Stderr, "  %s %s:", table, r.Case)
	for _, k := range r.Order {
		fmt.Fprintf(os.Stderr, " %s=%.4g", k, r.Figures[k].Median)
	}
	fmt.Fprintln(os.Stderr)
}

// collect turns per-run figure maps into a Row.
func collect(name string, order []string, runs []map[string]float64) Row {
	r := Row{Case: fmt.Sprintf("%s [%d runs]", name, len(runs)), Figures: map[string]Stat{}, Order: order}
	for _, k := range order {
		var v []float64
		for _, m := range runs {
			if x, ok := m[k]; ok && !math.IsNaN(x) {
				v = append(v, x)
			}
		}
		r.Figures[k] = stat(v)
	}
	return r
}

func (s *suite) ceiling(ctx context.Context) error {
	s.ceil = map[string]map[int]float64{"fsync": {}, "relaxed": {}}
	order := []string{"msgs_per_sec", "mib_per_sec", "events_per_sec_400B"}
	for _, dur := range []string{"fsync", "relaxed"} {
		for _, size := range s.o.sizes {
			var runs []map[string]float64
			for range s.o.runs {
				r, err := runCeiling(ctx, dur, size, s.o.publishers, s.o.ceilingFor)
				if err != nil {
					return err
				}
				runs = append(runs, map[string]float64{"msgs_per_sec": r.MsgsPerSec, "mib_per_sec": r.MiBPerSec, "events_per_sec_400B": r.EventsPerSec})
			}
			row := collect(fmt.Sprintf("%s %dKiB x%d publishers", dur, size>>10, s.o.publishers), order, runs)
			s.add("ceiling", row)
			s.ceil[dur][size] = row.Figures["mib_per_sec"].Median
		}
	}
	return nil
}

// binary builds clickpipe once.
func (s *suite) binary() (string, error) {
	if s.bin != "" {
		return s.bin, nil
	}
	if s.o.bin != "" {
		s.bin = s.o.bin
		return s.bin, nil
	}
	dir, err := os.MkdirTemp("", "clickpipe-bench-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "clickpipe")
	if b, err := exec.Command("go", "build", "-o", out, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, b)
	}
	s.bin = out
	return out, nil
}

func (s *suite) loadCfg(srv *server, seed int64) loadgen.Config {
	c := loadgen.DefaultConfig()
	c.Target, c.WriteKey = "http://"+srv.ingest, srv.writeKey
	c.Connections, c.BatchSize = s.o.connections, 100
	c.Population.Seed = seed
	c.Population.RunID = fmt.Sprintf("b%d", time.Now().UnixNano())
	c.Population.Start = time.Now()
	c.DrainTimeout = 30 * time.Second
	if s.o.progress {
		c.Progress = os.Stderr
	}
	return c
}

func runLoad(ctx context.Context, c loadgen.Config) (*loadgen.Report, error) {
	r, err := loadgen.New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	return r.Run(ctx)
}

const (
	streamBytes = `clickpipe_buffer_stream_bytes{stream="EVENTS"}`
	streamMsgs  = `clickpipe_buffer_stream_messages{stream="EVENTS"}`
)

// ingestRun is one closed-loop ingest measurement on a fresh server.
func (s *suite) ingestRun(ctx context.Context, seed int64, profile string, env ...string) (map[string]float64, error) {
	bin, err := s.binary()
	if err != nil {
		return nil, err
	}
	srv, err := startServer(ctx, bin, env...)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	c := s.loadCfg(srv, seed)
	c.Duration = s.o.ingestFor
	cpu0, self0 := srv.cpuSeconds(), procCPU(os.Getpid())
	b0, _ := srv.metric(ctx, streamBytes)
	var prof sync.WaitGroup
	if profile != "" {
		prof.Go(func() { s.profileTop(ctx, srv, profile) })
	}
	m0, _ := srv.metric(ctx, streamMsgs)
	rep, err := runLoad(ctx, c)
	if err != nil {
		return nil, err
	}
	prof.Wait()
	cpu, self := srv.cpuSeconds()-cpu0, procCPU(os.Getpid())-self0
	b1, ok1 := srv.metric(ctx, streamBytes)
	m1, ok2 := srv.metric(ctx, streamMsgs)
	m := map[string]float64{
		"events_per_sec": rep.EventsPerSec, "p50_ms": rep.Latency.P50, "p99_ms": rep.Latency.P99,
		"cpu_s_per_100k":         cpu / math.Max(float64(rep.EventsAcked), 1) * 1e5,
		"loadgen_cpu_s_per_100k": self / math.Max(float64(rep.EventsAcked), 1) * 1e5,
		"non_2xx":                float64(rep.Requests - rep.RequestsAcked),
	}
	if ok1 && ok2 && m1 > m0 && rep.Seconds > 0 {
		m["avg_msg_kib"] = (b1 - b0) / (m1 - m0) / 1024
		m["stream_mib_per_sec"] = (b1 - b0) / (1 << 20) / rep.Seconds
		m["stored_bytes_per_event"] = (b1 - b0) / math.Max(float64(rep.EventsAcked), 1)
	}
	return m, nil
}

func (s *suite) ingest(ctx context.Context) error {
	order := []string{"events_per_sec", "p50_ms", "p99_ms", "cpu_s_per_100k", "loadgen_cpu_s_per_100k", "avg_msg_kib", "stored_bytes_per_event", "stream_mib_per_sec", "pct_of_ceiling", "non_2xx"}
	for _, dur := range []string{"fsync", "relaxed"} {
		var runs []map[string]float64
		for i := range s.o.runs {
			profile := ""
			if i == 0 {
				profile = "ingest-" + dur
			}
			m, err := s.ingestRun(ctx, int64(i+1), profile, "CLICKPIPE_BUFFER_DURABILITY="+dur)
			if err != nil {
				return err
			}
			if c := s.ceilingAt(dur, m["avg_msg_kib"]*1024); c > 0 && m["stream_mib_per_sec"] > 0 {
				m["pct_of_ceiling"] = 100 * m["stream_mib_per_sec"] / c
			}
			runs = append(runs, m)
		}
		s.add("ingest", collect(dur+", 100-event batches, closed loop", order, runs))
	}
	return nil
}

func (s *suite) scaling(ctx context.Context) error {
	order := []string{"events_per_sec", "p99_ms", "cpu_s_per_100k"}
	procs := []int{1, 2}
	if n := s.res.Machine.CPUs; n > 2 {
		procs = append(procs, n)
	}
	for _, p := range procs {
		var runs []map[string]float64
		for i := range s.o.runs {
			m, err := s.ingestRun(ctx, int64(100+i), "", fmt.Sprintf("GOMAXPROCS=%d", p))
			if err != nil {
				return err
			}
			runs = append(runs, m)
		}
		s.add("scaling", collect(fmt.Sprintf("fsync ingest, server GOMAXPROCS=%d", p), order, runs))
	}
	return nil
}

// watch samples the server's lag and memory every second until stop.
type watch struct {
	mu        sync.Mutex
	lagS      []float64
	lagMsgs   []float64
	rss       float64
	hasMetric bool
}

func (w *watch) run(ctx context.Context, srv *server, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ls, ok1 := srv.metric(ctx, "clickpipe_process_consumer_lag_seconds")
		lm, ok2 := srv.metric(ctx, "clickpipe_process_consumer_lag_messages")
		w.mu.Lock()
		if ok1 {
			w.lagS = append(w.lagS, ls)
		}
		if ok2 {
			w.lagMsgs = append(w.lagMsgs, lm)
		}
		w.hasMetric = w.hasMetric || ok1 || ok2
		w.rss = max(w.rss, srv.rssMiB())
		w.mu.Unlock()
	}
}

func pct(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// queryLoad issues GETs at qps for random users and returns latencies.
func queryLoad(ctx context.Context, srv *server, qps int, users int, stop <-chan struct{}) (lat []float64, errs int) {
	t := time.NewTicker(time.Second / time.Duration(qps))
	defer t.Stop()
	rng := rand.New(rand.NewSource(7))
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-stop:
			return lat, errs
		case <-ctx.Done():
			return lat, errs
		case <-t.C:
		}
		url := fmt.Sprintf("http://%s/v1/users/u%d/continue-watching", srv.query, rng.Intn(users))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+srv.token)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			errs++
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			errs++
			continue
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
	}
}

// openLoopRun drives a fresh server with profile p and samples lag,
// memory and query latency; after the load it waits (bounded) for the lag
// to drain.
func (s *suite) openLoopRun(ctx context.Context, seed int64, p loadgen.Profile, d time.Duration) (map[string]float64, error) {
	bin, err := s.binary()
	if err != nil {
		return nil, err
	}
	srv, err := startServer(ctx, bin)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	c := s.loadCfg(srv, seed)
	c.Profile, c.Duration = p, d
	c.Connections = max(c.Connections, 64)
	c.Population.WallClock = true // lag and event-to-queryable latency need real timestamps
	w := &watch{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var qlat, plat []float64
	var qerr, pmiss int
	wg.Go(func() { w.run(ctx, srv, stop) })
	wg.Go(func() { plat, pmiss = probe(ctx, srv, stop) })
	wg.Go(func() { qlat, qerr = queryLoad(ctx, srv, 1000, c.Population.Users, stop) })
	rep, err := runLoad(ctx, c)
	loadEnd := time.Now()
	drain := math.NaN()
	if err == nil {
		for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
			if lm, ok := srv.metric(ctx, "clickpipe_process_consumer_lag_messages"); !ok || lm == 0 {
				if ok {
					drain = time.Since(loadEnd).Seconds()
				}
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	bad := 0.0
	for code, n := range rep.Status {
		if !strings.HasPrefix(code, "2") && code != "429" && code != "503" {
			bad += float64(n)
		}
	}
	m := map[string]float64{
		"events_per_sec": rep.EventsPerSec, "p99_ms": rep.Latency.P99, "e2e_p99_ms": rep.EndToEnd.P99,
		"lag_p50_s": pct(w.lagS, 0.5), "lag_p99_s": pct(w.lagS, 0.99), "lag_max_msgs": pct(w.lagMsgs, 1),
		"query_p99_ms": pct(qlat, 0.99), "query_errors": float64(qerr), "rss_mib": w.rss,
		"click_to_query_p50_ms": pct(plat, 0.5), "click_to_query_p99_ms": pct(plat, 0.99), "probe_misses": float64(pmiss),
		"queries_per_sec": float64(len(qlat)) / math.Max(time.Since(loadEnd.Add(-d)).Seconds(), 1),
		"retries":         float64(rep.Retries), "failed_events": float64(rep.EventsFailed), "other_errors": bad,
		"drain_s": drain,
	}
	if rep.TargetEvents > 0 {
		m["offered_pct"] = 100 * float64(rep.EventsSent) / float64(rep.TargetEvents)
	}
	if !w.hasMetric {
		s.note("lag metrics clickpipe_process_consumer_lag_{seconds,messages} absent on /metrics")
	}
	return m, nil
}

func (s *suite) note(n string) {
	if !slices.Contains(s.res.Notes, n) {
		s.res.Notes = append(s.res.Notes, n)
	}
}

func (s *suite) pipeline(ctx context.Context) error {
	order := []string{"events_per_sec", "offered_pct", "lag_p50_s", "lag_p99_s", "lag_max_msgs", "click_to_query_p50_ms", "click_to_query_p99_ms", "probe_misses", "query_p99_ms", "queries_per_sec", "query_errors", "rss_mib", "p99_ms", "drain_s"}
	var runs []map[string]float64
	for i := range max(1, s.o.runs-2) {
		m, err := s.openLoopRun(ctx, int64(200+i), loadgen.Profile{Rate: s.o.rate, RampFor: 2 * time.Second}, s.o.pipelineFor)
		if err != nil {
			return err
		}
		runs = append(runs, m)
	}
	s.add("pipeline", collect(fmt.Sprintf("target %.0f events/s for %s, 1000 queries/s", s.o.rate, s.o.pipelineFor), order, runs))
	return nil
}

func (s *suite) spike(ctx context.Context) error {
	order := []string{"events_per_sec", "offered_pct", "retries", "failed_events", "other_errors", "e2e_p99_ms", "lag_max_msgs", "drain_s", "rss_mib"}
	d := s.o.pipelineFor
	third := (d / 3).Round(time.Second)
	p := loadgen.Profile{Rate: s.o.rate, SpikeRate: s.o.spikeRate, SpikeAt: third, SpikeFor: third}
	var runs []map[string]float64
	for i := range max(1, s.o.runs-2) {
		m, err := s.openLoopRun(ctx, int64(300+i), p, d)
		if err != nil {
			return err
		}
		runs = append(runs, m)
	}
	s.add("spike", collect(fmt.Sprintf("%.0f/s, %.0f/s for %s at %s", s.o.rate, s.o.spikeRate, p.SpikeFor, p.SpikeAt), order, runs))
	return nil
}

// write saves results JSON and a Markdown table.
func (s *suite) write() error {
	s.res.Commands = []string{"go run ./bench " + strings.Join(os.Args[1:], " ")}
	if err := os.MkdirAll(s.o.out, 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	stamp := s.res.Started.Format("20060102-150405")
	js, err := json.MarshalIndent(s.res, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.o.out, "bench-"+stamp+".json"), js, 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	md := s.markdown()
	if err := os.WriteFile(filepath.Join(s.o.out, "bench-"+stamp+".md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	fmt.Print(md)
	return nil
}

func (s *suite) markdown() string {
	var b strings.Builder
	m := s.res.Machine
	fmt.Fprintf(&b, "Machine: %d CPUs, %s, %.0f GiB; %s mode, %d runs per measurement, started %s; `%s`\n\n",
		m.CPUs, m.Model, m.MemGiB, s.res.Mode, s.res.Runs, s.res.Started.Format(time.RFC3339), s.res.Commands[0])
	for _, name := range []string{"ceiling", "ingest", "scaling", "pipeline", "spike", "burst", "cluster", "cluster_ratios"} {
		rows := s.res.Tables[name]
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "### %s\n\n| case |", name)
		for _, k := range rows[0].Order {
			fmt.Fprintf(&b, " %s |", k)
		}
		b.WriteString("\n|---|")
		b.WriteString(strings.Repeat("---|", len(rows[0].Order)))
		b.WriteString("\n")
		for _, r := range rows {
			fmt.Fprintf(&b, "| %s |", r.Case)
			for _, k := range r.Order {
				st := r.Figures[k]
				fmt.Fprintf(&b, " %s (%s–%s) |", num(st.Median), num(st.Min), num(st.Max))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	for _, n := range s.res.Notes {
		fmt.Fprintf(&b, "- note: %s\n", n)
	}
	for _, p := range s.res.Profiles {
		fmt.Fprintf(&b, "\nServer CPU profile, %s (`go tool pprof -top`):\n\n```\n%s\n```\n", p.Name, strings.Join(p.Top, "\n"))
	}
	return b.String()
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// profileTop captures a CPU profile of the server during an ingest run
// and keeps pprof's top entries in the notes.
func (s *suite) profileTop(ctx context.Context, srv *server, name string) {
	dir := filepath.Join(s.o.out, "raw")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.note(fmt.Sprintf("%s profile: %v", name, err))
		return
	}
	s.profileSecs(ctx, srv, name, max(1, int(s.o.ingestFor/time.Second)-2))
}

// profileFor is profileTop over d.
func (s *suite) profileFor(ctx context.Context, srv *server, name string, d time.Duration) {
	s.profileSecs(ctx, srv, name, int(d/time.Second))
}

func (s *suite) profileSecs(ctx context.Context, srv *server, name string, secs int) {
	dir := filepath.Join(s.o.out, "raw")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.note(fmt.Sprintf("%s profile: %v", name, err))
		return
	}
	path := filepath.Join(dir, name+".pprof")
	if err := srv.profile(ctx, secs, path); err != nil {
		s.note(fmt.Sprintf("%s profile: %v", name, err))
		return
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=12", s.bin, path).Output()
	if err != nil {
		s.note(fmt.Sprintf("%s profile: pprof: %v", name, err))
		return
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	s.res.Profiles = append(s.res.Profiles, Profile{Name: name, Top: lines})
}

// Profile is pprof's top entries of one server CPU profile.
type Profile struct {
	Name string   `json:"name"`
	Top  []string `json:"top"`
}
