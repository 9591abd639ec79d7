package cmd

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/clickpipe/clickpipe/loadgen"
)

// newLoadgenCmd is `clickpipe loadgen`: realistic streaming-service traffic
// against a Segment-compatible tracking API. Plain flags, no config file.
func newLoadgenCmd() *cobra.Command {
	cfg := loadgen.DefaultConfig()
	var (
		shape    string
		asJSON   bool
		duration time.Duration
		start    string
		dataDir  string
	)
	c := &cobra.Command{
		Use:   "loadgen",
		Short: "Send realistic streaming-service traffic to a Segment-compatible tracking API",
		Long: `loadgen simulates subscribers on web, mobile and TV browsing and watching a catalog
(Segment Video Spec events with 10 s heartbeats) and sends their events as the Segment
SDKs do: Basic-auth batches to /v1/batch (or analytics.js /v1/b and single-event shapes).
Open loop with --rate (plus --ramp and --spike-*), otherwise closed loop with
--connections senders. 429/503 are retried with the same messageIds, honouring
Retry-After. --witness records every acknowledged messageId, fsynced.

Event time never runs ahead of the wall clock: sessions start at --sim-start
(default now) and when the send rate outruns the sessions in progress, more
sessions start (up to three quarters of --users); beyond that events are stamped
with the wall clock and the report counts them as clamped. --accelerated-time
lets simulated time run free instead (about 5x real time with the defaults at
20k events/s), which keeps the traffic reproducible but puts event times in the
future; --wall-clock stamps every event with its send time.

The write key is --write-key, else $CLICKPIPE_WRITE_KEY, else the development key a
local serve keeps in <data dir>/dev-write-key.

Examples:
  clickpipe loadgen --rate 500 --duration 60s          # local serve, development key
  clickpipe loadgen --rate 2000 --ramp 30s --spike-at 60s --spike-for 10s --spike-rate 20000
  clickpipe loadgen --target http://10.0.0.5:8080 --write-key "$KEY" --max-events 100000 --json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg.Shape = loadgen.Shape(shape)
			cfg.Duration = duration
			cfg.Progress = c.ErrOrStderr()
			cfg.WriteKey = firstNonEmpty(cfg.WriteKey, os.Getenv("CLICKPIPE_WRITE_KEY"), devCredential(dataDir, "dev-write-key"))
			if start != "" {
				t, err := time.Parse(time.RFC3339, start)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--sim-start: %w", err)}
				}
				cfg.Population.Start = t
			} else {
				cfg.Population.Start = time.Now()
			}
			log := slog.New(slog.NewTextHandler(c.ErrOrStderr(), nil))
			r, err := loadgen.New(cfg, log)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			rep, err := r.Run(c.Context())
			if rep != nil {
				if asJSON {
					enc := json.NewEncoder(c.OutOrStdout())
					enc.SetIndent("", "  ")
					if jerr := enc.Encode(rep); jerr != nil {
						return fmt.Errorf("writing report: %w", jerr)
					}
				} else if terr := rep.WriteText(c.OutOrStdout()); terr != nil {
					return fmt.Errorf("writing report: %w", terr)
				}
			}
			if err != nil {
				return fmt.Errorf("loadgen: %w", err)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Target, "target", cfg.Target, "tracking API base URL")
	f.StringVar(&cfg.WriteKey, "write-key", "", "write key (default $CLICKPIPE_WRITE_KEY, else <data-dir>/dev-write-key)")
	f.StringVar(&dataDir, "data-dir", defaultDataDir(), "where a local serve keeps its development write key (default $CLICKPIPE_DATA_DIR or ./data)")
	f.StringVar(&shape, "shape", string(cfg.Shape), "request shape: node, go, ajs-batch (/v1/b) or ajs (single events)")
	f.BoolVar(&cfg.Gzip, "gzip", false, "gzip request bodies")
	f.IntVar(&cfg.BatchSize, "batch", cfg.BatchSize, "events per batch request")
	f.DurationVar(&cfg.FlushInterval, "flush-interval", cfg.FlushInterval, "at low rates, send what accumulated in this interval")
	f.IntVar(&cfg.Connections, "connections", cfg.Connections, "concurrent senders (one population shard each)")
	f.Float64Var(&cfg.Profile.Rate, "rate", 0, "open-loop target events/s (0: closed loop, as fast as possible)")
	f.DurationVar(&cfg.Profile.RampFor, "ramp", 0, "ramp linearly up to --rate over this time")
	f.Float64Var(&cfg.Profile.SpikeRate, "spike-rate", 0, "events/s during the spike")
	f.DurationVar(&cfg.Profile.SpikeAt, "spike-at", 0, "spike start, from the beginning of the run")
	f.DurationVar(&cfg.Profile.SpikeFor, "spike-for", 0, "spike length")
	f.DurationVar(&duration, "duration", cfg.Duration, "how long to start new requests")
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "time allowed afterwards for in-flight requests and retries")
	f.Int64Var(&cfg.MaxEvents, "max-events", 0, "stop after this many events (0: no limit)")
	f.IntVar(&cfg.MaxRetries, "max-retries", cfg.MaxRetries, "retries per request for 429/503/5xx/network errors")
	f.DurationVar(&cfg.MaxRetryAfter, "max-retry-after", cfg.MaxRetryAfter, "cap on a server's Retry-After")
	f.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "per-attempt HTTP timeout")
	f.StringVar(&cfg.Witness, "witness", "", "append every acknowledged messageId to this file (fsynced before counting)")
	f.Float64Var(&cfg.HostileShare, "hostile", 0, "share of extra malformed requests (0..1)")
	f.BoolVar(&asJSON, "json", false, "print the final report as JSON")
	p := &cfg.Population
	f.Int64Var(&p.Seed, "seed", p.Seed, "random seed (same seed, same traffic)")
	f.StringVar(&p.RunID, "run-id", "", "tag in every messageId (default: the seed); vary it to resend without dedup")
	f.IntVar(&p.Users, "users", p.Users, "subscribers")
	f.IntVar(&p.ActiveSessions, "active-sessions", p.ActiveSessions, "sessions in progress at the start (more are started when the rate needs them; with --accelerated-time fewer make simulated time run faster)")
	f.IntVar(&p.Titles, "titles", p.Titles, "catalog size")
	f.Float64Var(&p.ZipfS, "zipf", p.ZipfS, "Zipf exponent of title popularity (>1)")
	f.Float64Var(&p.PremiereShare, "premiere", 0, "share of plays going to the premiere title t0 (0..1)")
	f.Float64Var(&p.AnonymousShare, "anonymous", p.AnonymousShare, "share of users sending only anonymousId")
	f.Float64Var(&p.BotShare, "bots", 0, "share of users with a crawler user agent")
	f.Float64Var(&p.IdentifyShare, "identify", p.IdentifyShare, "probability a session starts with identify")
	f.StringVar(&start, "sim-start", "", "simulated start time, RFC 3339 (default now)")
	f.BoolVar(&p.Accelerated, "accelerated-time", false, "let simulated time run ahead of the wall clock, as fast as the send rate drives it (reproducible traffic; event times drift into the future)")
	f.BoolVar(&p.WallClock, "wall-clock", false, "stamp events with the send time instead of simulated time (for latency measurements)")
	return c
}
