package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterWriteKey is the write key every node of a case accepts, so that
// one load generator can spread its connections over them.
const clusterWriteKey = "wk_bench_cluster_0123456789"

// clusterCase is one configuration of the cluster intake comparison.
type clusterCase struct {
	name  string
	tag   string // names its profiles
	nodes int
	env   []string
}

// cluster is issue 15's intake comparison: one node with fsync and with
// relaxed durability, three nodes with R3 and with R1 streams (fsync is
// the only durability a cluster accepts), all driven by the same closed
// loop, the cases interleaved run by run so that drift of the machine
// hits each alike. On one machine the three nodes share its cores.
func (s *suite) cluster(ctx context.Context) error {
	cases := []clusterCase{
		{"1 node, R1, fsync", "1node-fsync", 1, []string{"CLICKPIPE_BUFFER_DURABILITY=fsync"}},
		{"1 node, R1, relaxed", "1node-relaxed", 1, []string{"CLICKPIPE_BUFFER_DURABILITY=relaxed"}},
		{"3 nodes, R3, fsync", "3nodes-r3", 3, []string{"CLICKPIPE_CLUSTER_REPLICAS=3"}},
		{"3 nodes, R1, fsync", "3nodes-r1", 3, []string{"CLICKPIPE_CLUSTER_REPLICAS=1"}},
	}
	order := []string{"events_per_sec", "p50_ms", "p99_ms", "cpu_us_per_event", "leader_cpu_us_per_event",
		"follower_cpu_us_per_event", "loadgen_cpu_us_per_event", "machine_busy_pct", "non_2xx", "retries"}
	runs := make([][]map[string]float64, len(cases))
	failed := make([]bool, len(cases))
	for i := range s.o.runs {
		for j, c := range cases {
			if failed[j] {
				continue
			}
			m, err := s.clusterRun(ctx, int64(400+i), c, "")
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				failed[j] = true
				s.note(fmt.Sprintf("cluster %q: %v (case skipped)", c.name, err))
				continue
			}
			runs[j] = append(runs[j], m)
		}
	}
	// Profiles come from extra runs that are not counted: profiling takes
	// CPU from the nodes it watches.
	for _, j := range []int{0, 2} {
		if !failed[j] {
			if _, err := s.clusterRun(ctx, 499, cases[j], "cluster-"+cases[j].tag); err != nil {
				s.note(fmt.Sprintf("cluster %q: profile run: %v", cases[j].name, err))
			}
		}
	}
	for j, c := range cases {
		if len(runs[j]) > 0 {
			s.add("cluster", collect(fmt.Sprintf("%s, %s closed loop, archive off", c.name, s.o.clusterFor), order, runs[j]))
		}
	}
	ratio := func(name string, a, b int) {
		var r []map[string]float64
		for i := range min(len(runs[a]), len(runs[b])) {
			r = append(r, map[string]float64{
				"events_per_sec_ratio":   runs[a][i]["events_per_sec"] / runs[b][i]["events_per_sec"],
				"cpu_per_event_ratio":    runs[a][i]["cpu_us_per_event"] / runs[b][i]["cpu_us_per_event"],
				"p99_ratio":              runs[a][i]["p99_ms"] / runs[b][i]["p99_ms"],
				"machine_busy_pct_ratio": runs[a][i]["machine_busy_pct"] / runs[b][i]["machine_busy_pct"],
			})
		}
		if len(r) > 0 {
			s.add("cluster_ratios", collect(name, []string{"events_per_sec_ratio", "cpu_per_event_ratio", "p99_ratio", "machine_busy_pct_ratio"}, r))
		}
	}
	ratio("R3 fsync / R1 fsync (3 nodes vs 1)", 2, 0)
	ratio("R1 fsync / R1 relaxed (1 node)", 0, 1)
	ratio("R3 fsync / R1 relaxed (3 nodes vs 1)", 2, 1)
	ratio("3 nodes R1 / 3 nodes R3", 3, 2)
	s.note(fmt.Sprintf("cluster: the %d-CPU machine runs all three nodes and the load generator; ratios are the figure to read, the absolute three-node intake understates three machines", s.res.Machine.CPUs))
	return nil
}

// clusterRun starts the case's nodes on fresh data dirs, drives them for
// clusterFor with the connections spread over every node's ingest
// listener, and measures what they accepted and the CPU it cost. With
// profile set it also saves CPU profiles of the EVENTS leader and of one
// other node.
func (s *suite) clusterRun(ctx context.Context, seed int64, c clusterCase, profile string) (map[string]float64, error) {
	bin, err := s.binary()
	if err != nil {
		return nil, err
	}
	env := append([]string{"CLICKPIPE_ARCHIVE_ENABLED=false", "CLICKPIPE_INGEST_SOURCES=" + clusterWriteKey}, c.env...)
	nodes, natsPorts, err := startNodes(ctx, bin, c.nodes, env)
	if err != nil {
		return nil, err
	}
	defer stopAll(nodes)
	cfg := s.loadCfg(nodes[0], seed)
	cfg.Duration = s.o.clusterFor
	for _, n := range nodes {
		cfg.Targets = append(cfg.Targets, "http://"+n.ingest)
	}
	leader := 0
	if len(nodes) > 1 {
		if leader, err = eventsLeader(ctx, natsPorts[0]); err != nil {
			s.note(fmt.Sprintf("cluster %q: finding the EVENTS leader: %v", c.name, err))
			leader = -1
		}
	}
	var prof sync.WaitGroup
	defer prof.Wait() // before the deferred stop
	if profile != "" && leader >= 0 {
		secs := max(1, int(s.o.clusterFor/time.Second)-2)
		prof.Go(func() { s.profileSecs(ctx, nodes[leader], profile+"-leader", secs) })
		if len(nodes) > 1 {
			prof.Go(func() { s.profileSecs(ctx, nodes[(leader+1)%len(nodes)], profile+"-follower", secs) })
		}
	}
	cpu0 := make([]float64, len(nodes))
	for i, n := range nodes {
		cpu0[i] = n.cpuSeconds()
	}
	self0, t0 := procCPU(os.Getpid()), time.Now()
	rep, err := runLoad(ctx, cfg)
	if err != nil {
		return nil, err
	}
	wall := time.Since(t0).Seconds()
	acked := math.Max(float64(rep.EventsAcked), 1)
	if len(nodes) > 1 && leader >= 0 {
		if after, err := eventsLeader(ctx, natsPorts[0]); err != nil || after != leader {
			s.note(fmt.Sprintf("cluster %q: the EVENTS leader changed during a run (cp%d, then cp%d, %v)", c.name, leader, after, err))
		}
	}
	var total, follower float64
	for i, n := range nodes {
		cpu := n.cpuSeconds() - cpu0[i]
		total += cpu
		if i != leader {
			follower += cpu / float64(len(nodes)-1)
		}
	}
	self := procCPU(os.Getpid()) - self0
	m := map[string]float64{
		"events_per_sec": rep.EventsPerSec, "p50_ms": rep.Latency.P50, "p99_ms": rep.Latency.P99,
		"cpu_us_per_event":          total / acked * 1e6,
		"loadgen_cpu_us_per_event":  self / acked * 1e6,
		"machine_busy_pct":          100 * (total + self) / (wall * float64(max(1, s.res.Machine.CPUs))),
		"non_2xx":                   float64(rep.Requests - rep.RequestsAcked),
		"retries":                   float64(rep.Retries),
		"leader_cpu_us_per_event":   math.NaN(),
		"follower_cpu_us_per_event": math.NaN(),
	}
	if leader >= 0 {
		m["leader_cpu_us_per_event"] = (nodes[leader].cpuSeconds() - cpu0[leader]) / acked * 1e6
	}
	if leader >= 0 && len(nodes) > 1 {
		m["follower_cpu_us_per_event"] = follower / acked * 1e6
	}
	return m, nil
}

// startNodes starts one plain node, or n cluster nodes on 127.0.0.1 at
// once (each waits for its peers before it is ready), and returns them
// with their NATS client ports (cluster only).
func startNodes(ctx context.Context, bin string, n int, env []string) ([]*server, []int, error) {
	if n == 1 {
		srv, err := startServer(ctx, bin, env...)
		if err != nil {
			return nil, nil, err
		}
		return []*server{srv}, nil, nil
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, nil, err
	}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[2*i]))
	}
	nodes, errs := make([]*server, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		nodeEnv := append(append([]string{}, env...),
			"CLICKPIPE_CLUSTER_ENABLED=true",
			"CLICKPIPE_CLUSTER_NAME=bench",
			fmt.Sprintf("CLICKPIPE_CLUSTER_NODE_NAME=cp%d", i),
			fmt.Sprintf("CLICKPIPE_CLUSTER_LISTEN=127.0.0.1:%d", ports[2*i]),
			"CLICKPIPE_CLUSTER_ROUTES="+strings.Join(routes, ","),
			fmt.Sprintf("CLICKPIPE_BUFFER_LISTEN=127.0.0.1:%d", ports[2*i+1]),
		)
		wg.Go(func() { nodes[i], errs[i] = startServer(ctx, bin, nodeEnv...) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		stopAll(nodes)
		return nil, nil, fmt.Errorf("starting the cluster: %w", err)
	}
	natsPorts := make([]int, n)
	for i := range n {
		natsPorts[i] = ports[2*i+1]
	}
	return nodes, natsPorts, nil
}

// stopAll stops the started servers at once.
func stopAll(nodes []*server) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n != nil {
			wg.Go(n.stop)
		}
	}
	wg.Wait()
}

// freePorts reserves n loopback ports and releases them for the nodes.
func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserving a port: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// eventsLeader is the index of the node (named cp<i>) that leads the
// EVENTS stream, asked through the NATS client port port.
func eventsLeader(ctx context.Context, port int) (int, error) {
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.Timeout(5*time.Second))
	if err != nil {
		return -1, fmt.Errorf("connecting: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return -1, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		return -1, fmt.Errorf("stream EVENTS: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return -1, fmt.Errorf("stream EVENTS info: %w", err)
	}
	if info.Cluster == nil {
		return -1, errors.New("stream EVENTS: no cluster info")
	}
	var i int
	if _, err := fmt.Sscanf(info.Cluster.Leader, "cp%d", &i); err != nil {
		return -1, fmt.Errorf("stream EVENTS: leader %q is not a bench node", info.Cluster.Leader)
	}
	return i, nil
}
