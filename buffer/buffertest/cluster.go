package buffertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/clickpipe/clickpipe/buffer"
)

// Cluster is n buffers in one test process forming a JetStream cluster
// over routes on 127.0.0.1.
type Cluster struct {
	t     testing.TB
	Cfgs  []buffer.Config
	Dirs  []string
	Nodes []*buffer.Buffer // nil while stopped
}

// NewCluster starts n clustered buffers with cfg (cluster settings are
// filled in: node names n0.., free route ports, each node routing to all)
// and stops them when the test ends. Replicas default to min(n, 3).
func NewCluster(t testing.TB, n int, cfg buffer.Config) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	// The route ports are free when chosen but another package's test may
	// take one before the node listens on it (go test runs packages in
	// parallel); a cluster that does not start is set up again on new ports.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		err := c.setUp(n, cfg)
		if err == nil {
			// Registered after the nodes' directories, so it runs
			// before their removal (cleanups run last in, first out).
			t.Cleanup(c.StopAll)
			return c
		}
		c.StopAll()
		if attempt == attempts {
			t.Fatalf("buffertest: %v (attempt %d of %d)", err, attempt, attempts)
		}
		t.Logf("buffertest: %v; setting the cluster up again on new ports", err)
	}
}

// setUp configures and opens n nodes on fresh ports and directories.
func (c *Cluster) setUp(n int, cfg buffer.Config) error {
	ports := freePorts(c.t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c.Cfgs, c.Dirs, c.Nodes = nil, nil, make([]*buffer.Buffer, n)
	for i := range n {
		nc := cfg
		nc.Cluster.Enabled = true
		nc.Cluster.Name = "clickpipe-test"
		nc.Cluster.NodeName = fmt.Sprintf("n%d", i)
		nc.Cluster.Listen = fmt.Sprintf("127.0.0.1:%d", ports[i])
		nc.Cluster.Routes = routes
		nc.Cluster.Replicas = min(n, 3)
		nc.Cluster.JoinTimeout = time.Minute
		if nc.Cluster.LeaseTTL == 0 {
			nc.Cluster.LeaseTTL = 3 * time.Second
		}
		c.Cfgs = append(c.Cfgs, nc)
		c.Dirs = append(c.Dirs, c.t.TempDir())
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = c.open(i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
	}
	return nil
}

func (c *Cluster) open(i int) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := buffer.New(c.Cfgs[i], c.Dirs[i], log, nil)
	if err != nil {
		return err
	}
	if err := b.Open(context.Background()); err != nil {
		return err
	}
	c.Nodes[i] = b
	return nil
}

// Stop shuts node i down (its store stays for Start).
func (c *Cluster) Stop(i int) {
	if c.Nodes[i] != nil {
		_ = c.Nodes[i].Close()
		c.Nodes[i] = nil
	}
}

// Start restarts a stopped node i on its store; it returns once the node
// rejoined.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	if err := c.open(i); err != nil {
		c.t.Fatalf("buffertest: restarting node %d: %v", i, err)
	}
}

// StopAll stops every running node.
func (c *Cluster) StopAll() {
	for i := range c.Nodes {
		c.Stop(i)
	}
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("buffertest: free port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}
