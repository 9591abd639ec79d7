// Command bench is clickpipe's benchmark suite: the raw JetStream ceiling
// of the embedded buffer, ingest through the real binary driven by
// loadgen, the full pipeline at a target rate, a spike, GOMAXPROCS
// scaling, and one node against a three-node cluster; each repeated, reported as medians and ranges in Markdown and
// JSON under bench/results/.
//
//	go run ./bench            # quick mode, a few minutes
//	go run ./bench --full     # every scenario, 5 runs, under 30 minutes
//	go run ./bench --only cluster   # one node vs three (R1, R3) on this machine
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type options struct {
	full        bool
	runs        int
	only        map[string]bool
	sizes       []int
	publishers  int
	ceilingFor  time.Duration
	ingestFor   time.Duration
	pipelineFor time.Duration
	burstFor    time.Duration
	clusterFor  time.Duration
	burstUsers  []int
	rate        float64
	spikeRate   float64
	connections int
	out         string
	bin         string
	progress    bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	s := &suite{o: o, res: &results{Machine: machine(), Started: time.Now().UTC(), Mode: map[bool]string{true: "full", false: "quick"}[o.full], Runs: o.runs}}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"ceiling", s.ceiling},
		{"ingest", s.ingest},
		{"scaling", s.scaling},
		{"pipeline", s.pipeline},
		{"spike", s.spike},
		{"burst", s.burst},
		{"cluster", s.cluster},
	}
	for _, st := range steps {
		if !o.only[st.name] {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s\n", st.name)
		if err := st.fn(ctx); err != nil {
			s.res.Notes = append(s.res.Notes, fmt.Sprintf("%s: %v", st.name, err))
			fmt.Fprintf(os.Stderr, "%s: %v\n", st.name, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return s.write()
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &options{}
	var only, sizes, burstUsers string
	fs.BoolVar(&o.full, "full", false, "full mode: 5 runs and longer measurements (under 30 minutes)")
	fs.IntVar(&o.runs, "runs", 0, "repetitions per measurement (default 3 quick, 5 full)")
	fs.StringVar(&only, "only", "ceiling,ingest,scaling,pipeline,spike,burst", "scenarios to run (cluster runs only when named)")
	fs.StringVar(&sizes, "sizes", "32KiB,64KiB,256KiB,1MiB", "ceiling message sizes")
	fs.IntVar(&o.publishers, "publishers", 8, "concurrent publishers in the ceiling")
	fs.IntVar(&o.connections, "connections", 32, "loadgen connections for closed-loop ingest")
	fs.Float64Var(&o.rate, "rate", 50_000, "full-pipeline and spike baseline, events/s")
	fs.Float64Var(&o.spikeRate, "spike-rate", 500_000, "spike rate, events/s")
	fs.DurationVar(&o.ceilingFor, "ceiling-for", 0, "ceiling run length (default 3s quick, 10s full)")
	fs.DurationVar(&o.ingestFor, "ingest-for", 0, "ingest run length (default 8s quick, 20s full)")
	fs.DurationVar(&o.pipelineFor, "pipeline-for", 0, "pipeline run length (default 20s quick, 60s full)")
	fs.DurationVar(&o.burstFor, "burst-for", 20*time.Second, "burst length of the burst + catch-up scenario")
	fs.DurationVar(&o.clusterFor, "cluster-for", 15*time.Second, "closed-loop length of each case of the cluster scenario")
	fs.StringVar(&burstUsers, "burst-users", "2000,20000", "simulated users of each burst case")
	fs.StringVar(&o.out, "out", "bench/results", "output directory")
	fs.BoolVar(&o.progress, "progress", false, "print loadgen's progress line every second")
	fs.StringVar(&o.bin, "bin", "", "clickpipe binary (default: go build into a temp dir)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	pick := func(d *time.Duration, quick, full time.Duration) {
		if *d == 0 {
			*d = map[bool]time.Duration{false: quick, true: full}[o.full]
		}
	}
	pick(&o.ceilingFor, 3*time.Second, 10*time.Second)
	pick(&o.ingestFor, 8*time.Second, 20*time.Second)
	pick(&o.pipelineFor, 20*time.Second, 60*time.Second)
	if o.runs == 0 {
		o.runs = map[bool]int{false: 3, true: 5}[o.full]
	}
	o.only = map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		o.only[strings.TrimSpace(n)] = true
	}
	for _, u := range strings.Split(burstUsers, ",") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(u), "%d", &n); err != nil || n <= 0 {
			return nil, fmt.Errorf("burst-users %q: not a positive count", u)
		}
		o.burstUsers = append(o.burstUsers, n)
	}
	for _, sz := range strings.Split(sizes, ",") {
		n, err := parseSize(strings.TrimSpace(sz))
		if err != nil {
			return nil, err
		}
		o.sizes = append(o.sizes, n)
	}
	return o, nil
}

func parseSize(s string) (int, error) {
	mult := 1
	for suf, m := range map[string]int{"KiB": 1 << 10, "MiB": 1 << 20, "K": 1 << 10, "M": 1 << 20} {
		if strings.HasSuffix(s, suf) {
			s, mult = strings.TrimSuffix(s, suf), m
			break
		}
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: not a positive size", s)
	}
	return n * mult, nil
}

// machine names the hardware every figure comes from.
func machine() Machine {
	m := Machine{}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "processor") {
				m.CPUs++
			}
			if rest, ok := strings.CutPrefix(l, "model name"); ok && m.Model == "" {
				m.Model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		m.MemGiB = float64(kb) / (1 << 20)
	}
	m.Host, _ = os.Hostname()
	return m
}
