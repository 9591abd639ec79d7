package cmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/cluster"
	"github.com/clickpipe/clickpipe/config"
	"github.com/clickpipe/clickpipe/ingest"
	"github.com/clickpipe/clickpipe/internal/datadir"
	"github.com/clickpipe/clickpipe/internal/disk"
	"github.com/clickpipe/clickpipe/internal/gate"
	"github.com/clickpipe/clickpipe/internal/health"
	"github.com/clickpipe/clickpipe/internal/httpx"
	"github.com/clickpipe/clickpipe/internal/yield"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/regulation"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/snapshot"
	"github.com/clickpipe/clickpipe/state"
)

func newServeCmd(g *globalFlags) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the pipeline: tracking API, buffer, sessionizer, query API and archive",
		Long: `serve runs the whole pipeline in one process: the Segment-compatible tracking API, the
embedded NATS JetStream buffer, the per-user sessionizer into Badger, the query API with
/metrics and the web console (/console/), and the Parquet archive. Without --config it runs
on embedded defaults (data under ./data, ingest on :8080, query on 127.0.0.1:8081) and
prints a development write key and query token, kept in the data dir. CLICKPIPE_* variables
override the file. SIGTERM or SIGINT drains in order within shutdown_timeout.

Examples:
  clickpipe serve
  clickpipe serve --config config.yaml --log-format json
  CLICKPIPE_INGEST_SOURCES=web=wk_secret CLICKPIPE_QUERY_TOKENS=qt_secret clickpipe serve`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path, g)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			return runServe(c.Context(), cfg, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	c.Flags().StringVar(&path, "config", "", "configuration file (YAML); embedded defaults without one")
	return c
}

// node is one running clickpipe: everything serve opens, in one place so
// start-up can unwind on failure and shutdown can drain in order.
type node struct {
	cfg    *config.Config
	log    *slog.Logger
	reg    *prometheus.Registry
	stdout io.Writer

	dir    *datadir.Dir
	buf    *buffer.Buffer
	state  *state.Store
	live   *state.Live
	gov    *yield.Governor
	proc   *process.Processor
	arch   *archive.Archiver
	api    *serve.API
	regs   *regulation.Registry
	ingest *ingest.Ingest
	disk   *disk.Watermark
	gate   *gate.Gate
	checks *health.Checks
	leases *cluster.Manager // nil on one node
	dups   *lakeDups        // nil unless cluster.partition_ownership
	// routing and snaps serve partition ownership (nil without it; snaps
	// also without the archive: no object store).
	routing *queryRouting
	snaps   *snapshot.Manager

	ingestLn, queryLn   net.Listener
	ingestSrv, querySrv *http.Server
	writeKeys           []string
	queryTokens         []string
	adminTokens         map[string]string
}

// runServe is `clickpipe serve`: open stores bottom-up, start stages, wait
// for a signal or a failure, drain top-down within the shutdown budget.
func runServe(ctx context.Context, cfg *config.Config, stdout, stderr io.Writer) error {
	n := &node{cfg: cfg, stdout: stdout, log: newLogger(stderr, cfg.Log.Format, cfg.Log.Level)}
	n.reg = prometheus.NewRegistry()
	n.reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "clickpipe"}))
	n.log.Info("starting", "version", Version, "pid", os.Getpid(), "data_dir", cfg.DataDir)
	var undo []func()
	unwind := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	comps, err := n.open(ctx, &undo)
	if err != nil {
		unwind()
		return err
	}
	lc := &lifecycle{
		log:     n.log,
		budget:  cfg.ShutdownTimeout,
		dump:    stderr,
		comps:   comps,
		onDrain: n.checks.MarkDraining,
	}
	n.checks.MarkStarted()
	n.log.Info("ready", "ingest", n.ingestLn.Addr().String(), "query", n.queryLn.Addr().String())
	err = lc.run(ctx)
	if errors.Is(err, errHardStop) {
		_ = n.dir.Close()
		return &exitError{code: 1, err: err}
	}
	if err == nil {
		if cerr := n.dir.MarkClean(); cerr != nil {
			n.log.Warn("could not clear the running marker", "err", cerr)
		}
	}
	_ = n.dir.Close()
	return err
}

// open acquires every resource bottom-up and returns the components in
// stop order. Each acquired resource registers its release in undo, so a
// failure part way leaves nothing behind.
func (n *node) open(ctx context.Context, undo *[]func()) ([]component, error) {
	cfg := n.cfg
	dir, err := datadir.Open(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.dir = dir
	*undo = append(*undo, func() { _ = dir.Close() })
	if dir.Unclean() {
		n.log.Warn("previous run did not shut down cleanly (kill -9, crash or power loss); recovering from the stores",
			"data_dir", cfg.DataDir)
	}
	if n.disk, err = disk.NewWatermark(cfg.Disk, cfg.DataDir); err != nil {
		return nil, fmt.Errorf("disk watermark: %w", err)
	}
	n.registerDiskMetrics()
	if err := n.credentials(); err != nil {
		return nil, err
	}

	if err := n.openStores(ctx, undo); err != nil {
		return nil, err
	}
	if err := n.openArchive(ctx, undo); err != nil {
		return nil, err
	}

	n.checks = health.New()
	n.checks.Add("buffer", n.buf.Healthy)
	n.checks.Add("state", n.state.Healthy)
	n.checks.Add("process", n.proc.Healthy)
	if n.arch != nil {
		n.checks.Add("archive", n.arch.Healthy)
	}
	n.gate = gate.New(250*time.Millisecond, n.child("gate"), n.gateConditions()...)
	_ = n.gate.Refresh(ctx)
	n.checks.Add("intake", n.gate.Admit)
	n.registerReadinessMetrics()
	n.checks.AddWarning("intake_warnings", n.gate.Warnings)
	n.checks.AddWarning("partitions", n.proc.CatchingUp)

	if n.queryLn, err = net.Listen("tcp", cfg.Query.Listen); err != nil {
		return nil, fmt.Errorf("query listener: %w", err)
	}
	*undo = append(*undo, func() { _ = n.queryLn.Close() })
	if n.ingestLn, err = net.Listen("tcp", cfg.Ingest.Listen); err != nil {
		return nil, fmt.Errorf("ingest listener: %w", err)
	}
	*undo = append(*undo, func() { _ = n.ingestLn.Close() })
	if n.leases != nil {
		n.leases.SetInfo(map[string]string{"ingest": n.ingestLn.Addr().String(),
			"query": n.queryLn.Addr().String(), "version": Version})
	}

	n.ingest, err = ingest.New(cfg.Ingest, ingest.Deps{
		Publisher: n.buf, Partitions: cfg.Buffer.Partitions, Gate: n.gate, CheckID: idChecker(),
		RequireFailedStored: requireFailedStored, Suppressor: n.regs,
	}, n.child("ingest"), n.reg)
	if err != nil {
		return nil, fmt.Errorf("configuring ingest: %w", err)
	}

	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	*undo = append(*undo, stopWatch)
	n.querySrv = n.queryServer()
	n.ingestSrv = n.ingestServer()
	querySrv, ingestSrv := n.querySrv, n.ingestSrv
	qln := httpx.LimitListener(n.queryLn, cfg.Query.MaxConnections)
	iln := ingestListener(n.ingestLn, n.ingest, cfg.Ingest.MaxConnections)
	// Stop order (STYLE.md): ingest → publisher → process → archive →
	// query API → regulations → Badger → NATS.
	comps := []component{
		{name: "ingest", run: serveHTTP(ingestSrv, iln), stop: ingestSrv.Shutdown},
		{name: "publisher", run: n.ingest.Run, stop: n.ingest.Shutdown},
		{name: "process", run: n.proc.Run, stop: n.proc.Shutdown},
		n.archiveComponent(),
	}
	if n.leases != nil {
		// Cluster mode: ... → archive → cluster (release the leases) → query → ...
		comps = append(comps, n.clusterComponent())
		comps = append(comps, n.snapshotComponents()...)
	}
	comps = append(comps, component{name: "query", run: serveHTTP(querySrv, qln), stop: querySrv.Shutdown})
	comps = append(comps, n.routingComponents()...)
	comps = append(comps, []component{
		{name: "regulation", run: n.regs.Run, stop: func(ctx context.Context) error {
			return errors.Join(n.regs.Shutdown(ctx), n.regs.Close())
		}},
		{name: "watchers", run: func(context.Context) error {
			go func() { _ = n.disk.Run(watchCtx) }()
			go n.gov.Run(watchCtx, 250*time.Millisecond)
			return n.gate.Run(watchCtx)
		}, stop: func(context.Context) error { stopWatch(); return nil }},
		{name: "state", stop: func(context.Context) error { return n.state.Close() }},
		{name: "buffer", stop: func(context.Context) error { return n.buf.Close() }},
	}...)
	return comps, nil
}

func (n *node) child(component string) *slog.Logger { return n.log.With("component", component) }

// openStores starts the buffer (NATS), opens the serving state (Badger)
// and configures the query API and the sessionizer over them.
func (n *node) openStores(ctx context.Context, undo *[]func()) error {
	cfg := n.cfg
	if cfg.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	var err error
	n.buf, err = buffer.New(cfg.Buffer, buffer.StoreDir(cfg.DataDir), n.child("buffer"), n.reg)
	if err != nil {
		return fmt.Errorf("configuring buffer: %w", err)
	}
	if err := n.buf.Open(ctx); err != nil {
		return fmt.Errorf("starting buffer: %w", err)
	}
	*undo = append(*undo, func() { _ = n.buf.Close() })
	if err := n.openCluster(ctx); err != nil {
		return err
	}

	if n.state, err = openState(cfg, n.child("state"), n.reg); err != nil {
		return fmt.Errorf("opening serving state: %w", err)
	}
	*undo = append(*undo, func() { _ = n.state.Close() })
	n.live = state.NewLive(cfg.Buffer.Partitions)
	n.gov = yield.New(cfg.Process.OverloadShare)
	if err := n.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clickpipe_process_yielded_seconds_total",
		Help: "Time the sessionizer and archive slept to leave the CPU to the tracking API (process.overload_share)."},
		func() float64 { return n.gov.Yielded().Seconds() })); err != nil {
		return fmt.Errorf("registering yield metric: %w", err)
	}
	if n.regs, err = openRegulations(ctx, cfg, n.buf, n.state, n.buf, n.child("regulation"), n.reg); err != nil {
		return err
	}
	*undo = append(*undo, func() { _ = n.regs.Close() })
	if n.api, err = serve.NewAPI(n.state, n.live, cfg.Serve, n.child("query"), n.reg); err != nil {
		return fmt.Errorf("configuring query API: %w", err)
	}
	ec := eventsConsumers{buf: n.buf, prefix: processConsumerPrefix(cfg), ackWait: cfg.Process.AckWait}
	var consumers process.Consumers = ec
	if cfg.Cluster.Enabled {
		consumers = directEventsConsumers{ec}
	}
	deps := process.Deps{
		Store: n.state, Consumers: consumers, Sessions: n.buf, Partitions: cfg.Buffer.Partitions,
		Live: n.live, Pacer: n.gov, Controls: n.buf, Erasures: n.regs, Forgets: n.regs,
	}
	if err := n.openPartitionOwnership(ctx, &deps); err != nil {
		return err
	}
	n.proc, err = process.New(processConfig(cfg), deps, n.child("process"), n.reg)
	if err != nil {
		return fmt.Errorf("configuring sessionizer: %w", err)
	}
	if deps.Dynamic {
		owner := &partitionOwner{proc: n.proc, log: n.child("partitions"), stopWait: cfg.Cluster.LeaseTTL / 3}
		if owner.hooks, err = n.partitionHooks(ctx); err != nil {
			return err
		}
		owner.prepare = func(ctx context.Context, p int) {
			// Bounded: the takeover, if it comes, is five sixths of the
			// ttl after the holder's last renewal.
			ctx, cancel := context.WithTimeout(ctx, cfg.Cluster.LeaseTTL)
			defer cancel()
			if n.snaps != nil {
				n.snaps.Prepare(ctx, p) // first: it may move the checkpoint
			}
			n.proc.Prepare(ctx, p)
		}
		if !brokenKeepAnswering {
			// Answers, routed or local, only under a valid lease.
			n.routing.Responder.SetValidity(owner.valid)
		}
		owner.register(n.leases, cfg.Buffer.Partitions)
	}
	return nil
}

// openState opens the serving state. A data dir of an earlier state
// layout is moved aside (state.v1-<UTC time>, for the operator to delete)
// and the sessionizer rebuilds the state from the stream, as the log says.
func openState(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*state.Store, error) {
	dir := filepath.Join(cfg.DataDir, "state")
	st, err := state.Open(cfg.Serve.StoreOptions(), dir, log, reg)
	if !errors.Is(err, state.ErrOldLayout) {
		return st, err
	}
	old := dir + ".v1-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(dir, old); err != nil {
		return nil, fmt.Errorf("moving serving state of an earlier layout aside: %w", err)
	}
	log.Warn("serving state has an earlier layout: moved aside; rebuilding it from the stream "+
		"(events older than buffer.retention are not in it; the lake keeps them)", "old", old, "err", err)
	return state.Open(cfg.Serve.StoreOptions(), dir, log, reg)
}

// processConfig is the process section plus what it takes from others.
func processConfig(cfg *config.Config) process.Config {
	pc := cfg.Process
	pc.Retention = cfg.Buffer.Retention
	pc.MaxTxnBytes = cfg.Serve.MemTableBytes / 10
	return pc
}

// openArchive configures and opens the lake writer when enabled.
func (n *node) openArchive(ctx context.Context, undo *[]func()) error {
	cfg := n.cfg
	if !cfg.Archive.Enabled {
		return nil
	}
	var err error
	deps := archive.Deps{Consumers: archiveConsumers{buf: n.buf, cfg: cfg.Archive}, Deduper: n.state, Pacer: n.gov,
		Failed: poisonSink(n.buf), Erasures: lakeErasures{n.regs}}
	if brokenSkipLakeErasure {
		deps.Erasures = nil
	}
	if n.dups != nil {
		deps.Deduper = n.dups // the partitions' owners publish the lists
	}
	if brokenLakeDedup {
		deps.Deduper = nil
	}
	if n.leases != nil {
		deps.Lease = newLakeLeases(n.leases)
	}
	n.arch, err = archive.New(cfg.Archive, deps, n.child("archive"), n.reg)
	if err != nil {
		return fmt.Errorf("configuring archive: %w", err)
	}
	if err := n.arch.Open(ctx); err != nil {
		return fmt.Errorf("starting archive: %w", err)
	}
	*undo = append(*undo, func() { _ = n.arch.Close() })
	return nil
}

// gateConditions are the reasons ingest answers 503 instead of accepting.
func (n *node) gateConditions() []gate.Condition {
	return []gate.Condition{
		{Name: "disk", Check: func(context.Context) error { return n.disk.Err() }},
		{Name: "stream", Check: n.streamFull(buffer.EventsStream)},
		// Closed sessions wait in SESSIONS for the lake: a full stream
		// would stall the sessionizer, so it closes intake.
		{Name: "sessions_stream", Check: n.streamFull(buffer.SessionsStream)},
		// A full FAILED stream only costs the invalid items (counted and
		// logged as dropped); closing intake for it would let any client
		// with a write key stop all intake by sending junk.
		{Name: "failed_stream", Check: n.streamFull(buffer.FailedStream), Advisory: true},
		{Name: "archive", Check: func(context.Context) error {
			// Refuse intake before unarchived data could expire: the
			// oldest message the archive still holds must be younger
			// than 80 % of the retention.
			if n.arch == nil {
				return nil
			}
			held, oldest := n.arch.Lag()
			if budget := n.cfg.Buffer.Retention / 5 * 4; !oldest.IsZero() && time.Since(oldest) > budget {
				return fmt.Errorf("archive behind: %d messages held, oldest published %s ago (budget %s of the %s retention)",
					held, time.Since(oldest).Round(time.Second), budget, n.cfg.Buffer.Retention)
			}
			return nil
		}},
	}
}

// streamFull is a gate condition: the stream is past 95 % of its bytes.
func (n *node) streamFull(stream string) func(context.Context) error {
	return func(ctx context.Context) error {
		st, err := n.buf.State(ctx, stream)
		if err != nil {
			return err
		}
		if st.MaxBytes > 0 && st.Bytes >= uint64(st.MaxBytes)/100*95 {
			return fmt.Errorf("buffer stream %s at %d of %d bytes (95%% high-water mark)", stream, st.Bytes, st.MaxBytes)
		}
		return nil
	}
}

// archiveComponent is the archive stage, or a no-op when disabled.
func (n *node) archiveComponent() component {
	if n.arch == nil {
		return component{name: "archive"}
	}
	return component{name: "archive", run: n.arch.Run, stop: func(ctx context.Context) error {
		err := n.arch.Shutdown(ctx)
		return errors.Join(err, n.arch.Close())
	}}
}

// serveHTTP adapts http.Server.Serve to a component run function.
func serveHTTP(srv *http.Server, ln net.Listener) func(context.Context) error {
	return func(context.Context) error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

func (n *node) queryServer() *http.Server {
	mux := http.NewServeMux()
	n.checks.Register(mux)
	// Metrics and profiling for operators and the benchmark suite, behind
	// the query tokens like everything but the health probes.
	admin := adminGuard(n.queryTokens)
	mux.Handle("GET /metrics", admin(promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg})))
	mux.Handle("GET /debug/pprof/", admin(http.HandlerFunc(pprof.Index)))
	mux.Handle("GET /debug/pprof/profile", admin(http.HandlerFunc(pprof.Profile)))
	mux.Handle("GET /debug/pprof/trace", admin(http.HandlerFunc(pprof.Trace)))
	mux.Handle("GET /v1/events/live", httpx.RequireBearer(n.queryTokens, n.ingest.LiveHandler()))
	mux.Handle("/v1/", httpx.RequireBearer(n.queryTokens, n.queryAPI()))
	// Regulations (delete and suppress users) need an admin token.
	regs := n.regs.Handler(n.adminTokens)
	mux.Handle("POST /v1/regulations", regs)
	mux.Handle("GET /v1/regulations", regs)
	mux.Handle("GET /v1/regulations/{id}", regs)
	mux.Handle("GET /v1/admin/invariants", httpx.RequireBearer(n.queryTokens, n.invariantsHandler()))
	n.routeCluster(mux)
	n.routeConsole(mux)
	return httpx.NewServer(mux, httpx.DefaultTimeouts())
}

func (n *node) ingestServer() *http.Server {
	mux := http.NewServeMux()
	n.checks.Register(mux)
	h := n.ingest.Handler()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.gov.Intake()
		h.ServeHTTP(w, r)
	}))
	srv := httpx.NewServer(httpx.GuardReserved([]string{"/healthz", "/readyz"}, mux), httpx.DefaultTimeouts())
	srv.ConnContext = httpx.ConnContext
	return srv
}

// credentials makes sure there is at least one write key and one query
// token. Without configured ones it generates development credentials,
// keeps them under the data dir so they survive restarts, and prints them.
func (n *node) credentials() error {
	for _, s := range n.cfg.Ingest.Sources {
		n.writeKeys = append(n.writeKeys, s.WriteKey)
	}
	if len(n.writeKeys) == 0 {
		key, err := devSecret(filepath.Join(n.cfg.DataDir, "dev-write-key"), "wk_")
		if err != nil {
			return fmt.Errorf("development write key: %w", err)
		}
		n.cfg.Ingest.Sources = append(n.cfg.Ingest.Sources, devSource(key))
		n.writeKeys = []string{key}
		fmt.Fprintf(n.stdout, "development write key (source %q): %s\n", devSourceName, key)
	}
	n.queryTokens = n.cfg.Query.Tokens
	if len(n.queryTokens) == 0 && n.cfg.Query.Remote() {
		n.log.Warn("query listener reachable beyond loopback with a generated development token; configure query.tokens",
			"listen", n.cfg.Query.Listen)
	}
	if len(n.queryTokens) == 0 {
		tok, err := devSecret(filepath.Join(n.cfg.DataDir, "dev-query-token"), "qt_")
		if err != nil {
			return fmt.Errorf("development query token: %w", err)
		}
		n.queryTokens = []string{tok}
		n.cfg.Query.Tokens = n.queryTokens
		fmt.Fprintf(n.stdout, "development query token: %s\n", tok)
	}
	return n.adminCredentials()
}

// adminCredentials are the regulations API's tokens: the configured
// name=token pairs, else a development token named "dev".
func (n *node) adminCredentials() error {
	n.adminTokens = n.cfg.Query.AdminTokenMap()
	if len(n.adminTokens) > 0 {
		return nil
	}
	if n.cfg.Query.Remote() {
		n.log.Warn("query listener reachable beyond loopback with a generated development admin token; configure query.admin_tokens",
			"listen", n.cfg.Query.Listen)
	}
	tok, err := devSecret(filepath.Join(n.cfg.DataDir, "dev-admin-token"), "at_")
	if err != nil {
		return fmt.Errorf("development admin token: %w", err)
	}
	n.adminTokens = map[string]string{devSourceName: tok}
	fmt.Fprintf(n.stdout, "development admin token (regulations API): %s\n", tok)
	return nil
}

const devSourceName = "dev"

func devSource(key string) ingest.Source { return ingest.Source{Name: devSourceName, WriteKey: key} }

// devSecret reads the secret stored at path, or creates one.
func devSecret(path, prefix string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	s := prefix + hex.EncodeToString(raw)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o600); err != nil {
		return "", err
	}
	return s, os.Rename(tmp, path)
}

// stopOrder is the documented drain order on one node; the lifecycle test
// asserts the running binary follows it. In cluster mode "cluster" (the
// lease manager, releasing the leases) stops between archive and query.
var stopOrder = []string{"ingest", "publisher", "process", "archive", "query", "regulation", "watchers", "state", "buffer"}
