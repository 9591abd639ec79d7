// Package cluster is the cluster suite (RELIABILITY.md T14, issue 15): three
// real clickpipe binaries on 127.0.0.1 form a JetStream cluster, each
// node dialling each peer through a fault proxy of its own; a driver sends witnessed events to every node; the
// checker reads the EVENTS stream back and compares it with the witness.
// The fast tier runs by default; CLICKPIPE_CLUSTER_LONG=1 adds the longer
// scenarios.
package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/internal/clickpipetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	clickpipetest.RemoveBinary()
	os.Exit(code)
}

const writeKey = "wk_cluster_suite_0123456789"

// longTier skips a test of the long tier unless CLICKPIPE_CLUSTER_LONG is
// set (`make cluster-long`).
func longTier(t *testing.T) {
	t.Helper()
	if os.Getenv("CLICKPIPE_CLUSTER_LONG") == "" {
		t.Skip("long tier: set CLICKPIPE_CLUSTER_LONG=1")
	}
}

// node is one clickpipe serve of the cluster.
type node struct {
	name                string
	dir                 string
	routePort, natsPort int
	proc                *clickpipetest.Proc
	past                []*clickpipetest.Proc // the processes before restarts
	ingest, query       string
}

// logged is every line with msg that the node logged, over its restarts.
func (n *node) logged(msg string) []map[string]any {
	var out []map[string]any
	for _, p := range append(n.past, n.proc) {
		if p != nil {
			out = append(out, p.All(msg)...)
		}
	}
	return out
}

type testCluster struct {
	t     *testing.T
	tags  string
	ttl   time.Duration
	lake  string
	nodes []*node
	env   []string // extra settings of every node
	// links[{i, j}] is the proxy node i dials node j's route port through:
	// one per direction and pair, so that a node can be cut off entirely
	// (isolate). Every node advertises deadEnd, which refuses every
	// connection, so that no route is made around the proxies from the
	// addresses the route gossip passes on.
	links   map[[2]int]*faultProxy
	deadEnd string

	mu sync.Mutex // the nodes list and their ingest addresses, read by the driver
}

// startCluster starts three nodes (built with tags) and waits until each is
// ready.
func startCluster(t *testing.T, tags string) *testCluster {
	t.Helper()
	return startClusterTTL(t, tags, 3*time.Second)
}

// startClusterTTL is startCluster with a lease ttl.
//
// CLICKPIPE_CLUSTER_SUITE_TTL overrides ttl (to measure handovers at the
// default 15 s, BENCHMARKS.md "Cluster handovers").
func startClusterTTL(t *testing.T, tags string, ttl time.Duration, env ...string) *testCluster {
	t.Helper()
	if v := os.Getenv("CLICKPIPE_CLUSTER_SUITE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "CLICKPIPE_CLUSTER_SUITE_TTL")
		ttl = d
	}
	c := &testCluster{t: t, tags: tags, ttl: ttl, lake: t.TempDir(), env: env,
		links: map[[2]int]*faultProxy{}, deadEnd: newDeadEnd(t)}
	for range 3 {
		c.newNode()
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(60)
		}
	})
	for i := range c.nodes {
		c.launch(i)
	}
	for i := range c.nodes {
		c.waitReady(i)
	}
	return c
}

// newNode adds a node (not started) with its ports.
func (c *testCluster) newNode() int {
	ports := freePorts(c.t, 2)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := &node{name: fmt.Sprintf("cp%d", len(c.nodes)), dir: c.t.TempDir(), routePort: ports[0], natsPort: ports[1]}
	c.nodes = append(c.nodes, n)
	return len(c.nodes) - 1
}

// link is the proxy node i dials node j through (made on first use).
func (c *testCluster) link(i, j int) *faultProxy {
	l := c.links[[2]int{i, j}]
	if l == nil {
		l = newFaultProxy(c.t, fmt.Sprintf("127.0.0.1:%d", c.nodes[j].routePort))
		c.links[[2]int{i, j}] = l
	}
	return l
}

// cut applies f to every link from or to node i (isolating it with
// blackhole, healing it with heal).
func (c *testCluster) cut(i int, f func(*faultProxy)) {
	for k, l := range c.links {
		if k[0] == i || k[1] == i {
			f(l)
		}
	}
}

// join starts a new node whose routes name every node so far: it joins
// the running cluster (the others learn of it through the route gossip).
func (c *testCluster) join() int {
	i := c.newNode()
	c.launch(i)
	c.waitReady(i)
	return i
}

// setIngest sets the address the driver sends node i's share to ("" while
// the node is down or taken out, as a load balancer's health check would).
func (c *testCluster) setIngest(i int, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[i].ingest = addr
}

// routes is node i's routes: to every other node through its own links.
func (c *testCluster) routes(i int) string {
	var r []string
	for j := range c.nodes {
		if j != i {
			r = append(r, "nats-route://"+c.link(i, j).addr())
		}
	}
	return strings.Join(r, ",")
}

// launch starts node i's process; it dials its peers through its links.
func (c *testCluster) launch(i int) {
	n := c.nodes[i]
	if n.proc != nil {
		n.past = append(n.past, n.proc)
	}
	n.proc = clickpipetest.StartWith(c.t, c.tags, n.dir, nil, append([]string{
		"CLICKPIPE_CLUSTER_ENABLED=true",
		"CLICKPIPE_CLUSTER_NAME=suite",
		"CLICKPIPE_CLUSTER_NODE_NAME=" + n.name,
		fmt.Sprintf("CLICKPIPE_CLUSTER_LISTEN=127.0.0.1:%d", n.routePort),
		"CLICKPIPE_CLUSTER_ADVERTISE=" + c.deadEnd,
		"CLICKPIPE_CLUSTER_ROUTES=" + c.routes(i),
		"CLICKPIPE_CLUSTER_LEASE_TTL=" + c.ttl.String(),
		fmt.Sprintf("CLICKPIPE_BUFFER_LISTEN=127.0.0.1:%d", n.natsPort),
		"CLICKPIPE_INGEST_SOURCES=" + writeKey,
		"CLICKPIPE_ARCHIVE_URL=file://" + c.lake,
	}, c.env...)...,
	)
}

func (c *testCluster) waitReady(i int) {
	n := c.nodes[i]
	l := n.proc.Find("ready", 120*time.Second)
	c.mu.Lock()
	n.query = l["query"].(string)
	c.mu.Unlock()
	c.setIngest(i, l["ingest"].(string))
}

// queryAddr is node i's query address (set again by each restart), for
// goroutines that ask it while the test restarts it.
func (c *testCluster) queryAddr(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].query
}

// kill9 kills node i with SIGKILL; loseDisk also deletes its data dir.
func (c *testCluster) kill9(i int, loseDisk bool) {
	n := c.nodes[i]
	_ = n.proc.Cmd.Process.Kill()
	n.proc.Wait(10 * time.Second)
	c.setIngest(i, "")
	if loseDisk {
		if err := os.RemoveAll(n.dir); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *testCluster) restart(i int) {
	c.launch(i)
	c.waitReady(i)
}

// js connects to node i's NATS client port.
func (c *testCluster) js(i int) (jetstream.JetStream, func()) {
	var nc *nats.Conn
	var err error
	for try := 0; try < 40; try++ {
		if nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].natsPort), nats.Timeout(5*time.Second)); err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("connecting to %s: %v", c.nodes[i].name, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return js, nc.Close
}

// streamInfo is EVENTS as node i's connection sees it.
func (c *testCluster) streamInfo(i int) (*jetstream.StreamInfo, error) {
	return c.namedStreamInfo(i, "EVENTS")
}

// namedStreamInfo is stream name as node i's connection sees it.
func (c *testCluster) namedStreamInfo(i int, name string) (*jetstream.StreamInfo, error) {
	js, done := c.js(i)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

func (c *testCluster) index(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	c.t.Fatalf("no node named %q", name)
	return -1
}

func (c *testCluster) ingestAddrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, n := range c.nodes {
		if n.ingest != "" {
			out = append(out, n.ingest)
		}
	}
	return out
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return out
}

// driver sends batches with unique messageIds, one worker per node like a
// load balancer would spread them; a failed request is retried with the
// same ids on the next node (the SDKs retry 5xx and connection errors).
type driver struct {
	c      *testCluster
	client *http.Client

	gap time.Duration // each worker's pause after an acknowledged batch

	mu       sync.Mutex
	attempts map[string]int // per id: times put on the wire
	acked    map[string]bool
	status   map[int]int
	errs     int
}

func newDriver(c *testCluster) *driver {
	return &driver{c: c, client: &http.Client{Timeout: 15 * time.Second},
		attempts: map[string]int{}, acked: map[string]bool{}, status: map[int]int{}}
}

// ackedCount is how many events the driver got acknowledged so far.
func (d *driver) ackedCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.acked)
}

func (d *driver) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for seq := 0; ctx.Err() == nil; seq++ {
				ids, body := batch(w, seq, 20)
				for try := 0; ctx.Err() == nil; try++ {
					addrs := d.c.ingestAddrs()
					if len(addrs) > 0 && d.post(ctx, addrs[(w+try)%len(addrs)], ids, body) {
						wait(ctx, d.gap)
						break
					}
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		})
	}
	wg.Wait()
}

func batch(worker, seq, n int) ([]string, []byte) {
	ids := make([]string, n)
	items := make([]map[string]any, n)
	now := time.Now().UTC()
	for i := range n {
		ids[i] = fmt.Sprintf("w%d-b%d-e%d", worker, seq, i)
		items[i] = map[string]any{"type": "track", "event": "Video Content Playing", "messageId": ids[i],
			"userId": fmt.Sprintf("user-%d-%d", worker, seq%13), "timestamp": now.Format(time.RFC3339Nano),
			"properties": map[string]any{"content_asset_id": "title-1", "position": seq*10 + i, "total_length": 3600}}
	}
	body, _ := json.Marshal(map[string]any{"batch": items, "sentAt": now.Format(time.RFC3339Nano)})
	return ids, body
}

func (d *driver) post(ctx context.Context, addr string, ids []string, body []byte) bool {
	d.mu.Lock()
	for _, id := range ids {
		d.attempts[id]++
	}
	d.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(writeKey+":")))
	resp, err := d.client.Do(req)
	if err != nil {
		d.mu.Lock()
		d.errs++
		d.mu.Unlock()
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status[resp.StatusCode]++
	if resp.StatusCode != http.StatusOK {
		return false
	}
	for _, id := range ids {
		d.acked[id] = true
	}
	return true
}

// report is the checker's verdict over the EVENTS stream.
type report struct {
	Acked, Sent, InStream int
	// Lost: acknowledged, absent. Dup: present twice although sent once.
	// Unexpected: present, never sent.
	Lost, Dup, Unexpected int
	// DupRetried: present twice after a retried request (allowed: the
	// sessionizer's dedup index counts it once).
	DupRetried int
	Status     map[int]int
	Errs       int
	ReadErr    string `json:",omitempty"`
}

func (r report) String() string { b, _ := json.Marshal(r); return string(b) }

// check reads EVENTS through node i and compares it with the witness.
func (d *driver) check(i int) report { return d.checkWithin(i, 20*time.Second) }

// checkWithin is check with the read of the stream retried for retry: it
// may still be electing a leader right after a fault.
func (d *driver) checkWithin(i int, retry time.Duration) report {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := report{Acked: len(d.acked), Sent: len(d.attempts), Status: d.status, Errs: d.errs}
	seen, err := d.c.readEvents(i)
	for deadline := time.Now().Add(retry); err != nil && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		seen, err = d.c.readEvents(i)
	}
	if err != nil {
		r.ReadErr = err.Error()
	}
	for id, n := range seen {
		r.InStream += n
		switch {
		case d.attempts[id] == 0:
			r.Unexpected++
		case n > 1 && d.attempts[id] > 1:
			r.DupRetried++
		case n > 1:
			r.Dup++
		}
	}
	for id := range d.acked {
		if seen[id] == 0 {
			r.Lost++
		}
	}
	return r
}

// pause stops node i with SIGSTOP and takes it out of the driver's
// targets, as a load balancer's health check would; resume undoes both.
func (c *testCluster) pause(i int) (resume func()) {
	pid := c.nodes[i].proc.Cmd.Process.Pid
	require.NoError(c.t, syscall.Kill(pid, syscall.SIGSTOP))
	addr := c.nodes[i].ingest
	c.setIngest(i, "")
	return func() {
		require.NoError(c.t, syscall.Kill(pid, syscall.SIGCONT))
		c.setIngest(i, addr)
	}
}

// loaded starts the driver's witnessed load on every node (three senders
// each); stop ends it and waits, and runs at the test's end too.
func loaded(t *testing.T, c *testCluster) (d *driver, ctx context.Context, stop func()) {
	return loadedAt(t, c, 0)
}

// loadedAt is loaded with each sender pausing gap after each acknowledged
// batch (a lighter load: fewer events for the checkers to read back).
func loadedAt(t *testing.T, c *testCluster, gap time.Duration) (d *driver, ctx context.Context, stop func()) {
	d = newDriver(c)
	d.gap = gap
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.run(ctx, 3) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return d, ctx, stop
}

// readEvents counts each messageId in the EVENTS stream, read through
// node i.
func (c *testCluster) readEvents(i int) (map[string]int, error) {
	seen := map[string]int{}
	err := c.eachMessage(i, func(m jetstream.Msg) {
		for line := range bytes.SplitSeq(m.Data(), []byte("\n")) {
			var e struct {
				MessageID string `json:"messageId"`
			}
			if json.Unmarshal(line, &e) == nil && e.MessageID != "" {
				seen[e.MessageID]++
			}
		}
	})
	return seen, err
}

// eachMessage calls fn with every message of the EVENTS stream, in stream
// order, read through node i (and the other running nodes in turn when an
// ordered consumer stalls).
func (c *testCluster) eachMessage(i int, fn func(jetstream.Msg)) error {
	last, err := c.lastSeq(i)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// An ordered consumer created right after a fault sometimes delivers
	// nothing for seconds (in one run of TestCrashHandovers four in a row
	// through one node): one that does is replaced by a new one from the
	// next sequence, through the next running node, a few times.
	var seq uint64
	for stalls := 0; seq < last; stalls++ {
		if stalls > 6 {
			return fmt.Errorf("EVENTS: no messages past %d of %d", seq, last)
		}
		if stalls > 0 {
			i = c.nextRunning(i)
		}
		if err := c.readSome(ctx, i, &seq, last, fn); err != nil {
			return err
		}
	}
	return nil
}

// lastSeq is EVENTS' last sequence as node i's connection sees it.
func (c *testCluster) lastSeq(i int) (uint64, error) {
	js, done := c.js(i)
	defer done()
	lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer lcancel()
	s, err := js.Stream(lctx, "EVENTS")
	if err != nil {
		return 0, fmt.Errorf("EVENTS unavailable: %w", err)
	}
	info, err := s.Info(lctx)
	if err != nil {
		return 0, fmt.Errorf("EVENTS info: %w", err)
	}
	return info.State.LastSeq, nil
}

// readSome reads EVENTS through node i with one ordered consumer from *seq
// + 1 until last or until a fetch brings nothing, advancing *seq.
func (c *testCluster) readSome(ctx context.Context, i int, seq *uint64, last uint64, fn func(jetstream.Msg)) error {
	js, done := c.js(i)
	defer done()
	s, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		return fmt.Errorf("EVENTS unavailable: %w", err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: *seq + 1})
	if err != nil {
		return fmt.Errorf("ordered consumer: %w", err)
	}
	for *seq < last {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, _ := m.Metadata()
			*seq = meta.Sequence.Stream
			fn(m)
		}
		if got == 0 {
			return nil
		}
	}
	return nil
}

// nextRunning is the first running node after i (i itself if none other).
func (c *testCluster) nextRunning(i int) int {
	for k := 1; k <= len(c.nodes); k++ {
		if j := (i + k) % len(c.nodes); c.nodes[j].proc != nil {
			return j
		}
	}
	return i
}

// dumpLogs prints, for every node, the last n lines clickpipe itself
// logged and the last n/4 of the embedded nats-server's (component
// "buffer", mostly raft chatter).
func (c *testCluster) dumpLogs(n int) {
	for _, nd := range c.nodes {
		if nd.proc == nil {
			continue
		}
		var own, nats []map[string]any
		for _, l := range nd.proc.Lines() {
			if l["component"] == "buffer" {
				nats = append(nats, l)
			} else {
				own = append(own, l)
			}
		}
		for _, l := range append(nats[max(0, len(nats)-n/4):], own[max(0, len(own)-n):]...) {
			b, _ := json.Marshal(l)
			c.t.Logf("%s: %s", nd.name, b)
		}
	}
}
