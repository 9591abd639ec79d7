package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/cluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, buffertest.LeakOptions()...) }

// tracker records who runs the guarded work and fails on any overlap,
// which in one process with one clock is exactly "two owners at once".
type tracker struct {
	mu      sync.Mutex
	active  map[string]bool
	overlap []string
	starts  []start
	stops   map[string]time.Time
	// prepares is every Prepare call, with the holder active then.
	prepares []prepared
}

type prepared struct {
	node, holder string
	at           time.Time
}

// prep records a Prepare call of node.
func (tr *tracker) prep(node string) func(context.Context) {
	return func(context.Context) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		var holder string
		for n := range tr.active {
			holder = n
		}
		tr.prepares = append(tr.prepares, prepared{node, holder, time.Now()})
	}
}

type start struct {
	node  string
	epoch uint64
	at    time.Time
}

func newTracker() *tracker {
	return &tracker{active: map[string]bool{}, stops: map[string]time.Time{}}
}

func (tr *tracker) work(node string, holdings chan<- *cluster.Holding) cluster.Work {
	return func(ctx context.Context, h *cluster.Holding) error {
		tr.mu.Lock()
		for n := range tr.active {
			tr.overlap = append(tr.overlap, fmt.Sprintf("%s started epoch %d while %s active", node, h.Epoch, n))
		}
		tr.active[node] = true
		tr.starts = append(tr.starts, start{node, h.Epoch, time.Now()})
		tr.mu.Unlock()
		if holdings != nil {
			holdings <- h
		}
		<-ctx.Done()
		tr.mu.Lock()
		delete(tr.active, node)
		tr.stops[node] = time.Now()
		tr.mu.Unlock()
		return nil
	}
}

func (tr *tracker) holder() (string, uint64, int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for n := range tr.active {
		return n, tr.starts[len(tr.starts)-1].epoch, len(tr.active)
	}
	return "", 0, 0
}

type node struct {
	m      *cluster.Manager
	cancel context.CancelFunc
	done   chan struct{}
}

func startManagers(t *testing.T, c *buffertest.Cluster, ttl time.Duration, tr *tracker, holdings chan *cluster.Holding) []*node {
	t.Helper()
	var nodes []*node
	for i, b := range c.Nodes {
		name := c.Cfgs[i].Cluster.NodeName
		m, err := cluster.New(cluster.Config{NodeName: name, TTL: ttl, Replicas: 3},
			b.JetStream(), testLog(name), prometheus.NewRegistry())
		require.NoError(t, err)
		m.Register("lake", tr.work(name, holdings))
		m.Prepare("lake", tr.prep(name))
		require.NoError(t, m.Open(context.Background()))
		ctx, cancel := context.WithCancel(context.Background())
		n := &node{m: m, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(n.done); _ = m.Run(ctx) }()
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.cancel()
			<-n.done
		}
	})
	return nodes
}

func index(c *buffertest.Cluster, name string) int {
	for i, cfg := range c.Cfgs {
		if cfg.Cluster.NodeName == name {
			return i
		}
	}
	return -1
}

// One holder at a time across a graceful handover and a crash of the
// holder; the holder is the rendezvous choice; epochs grow; a crashed
// holder's Check fails and its work stopped before the successor began.
func TestLeaseExclusiveAcrossFailover(t *testing.T) {
	const ttl = 2 * time.Second
	c := buffertest.NewCluster(t, 3, buffertest.Config())
	tr := newTracker()
	holdings := make(chan *cluster.Holding, 16)
	nodes := startManagers(t, c, ttl, tr, holdings)
	ctx := context.Background()

	var first string
	var epoch1 uint64
	require.Eventually(t, func() bool {
		st, err := nodes[0].m.Status(ctx)
		if err != nil || len(st.Members) != 3 || len(st.Leases) != 1 {
			return false
		}
		l := st.Leases[0]
		first, epoch1 = l.Holder, l.Epoch
		h, e, n := tr.holder()
		return l.Holder == l.Desired && h == l.Holder && e == l.Epoch && n == 1
	}, 20*time.Second, 50*time.Millisecond, "status shows 3 members and the desired holder running the work")
	h1 := latest(holdings)
	require.Equal(t, epoch1, h1.Epoch)
	require.NoError(t, h1.Check(ctx), "the holder proves its lease")

	// Graceful: the holder leaves; a successor takes over without
	// waiting for the ttl.
	i := index(c, first)
	left := time.Now()
	require.NoError(t, nodes[i].m.Shutdown(ctx))
	require.Eventually(t, func() bool { h, _, _ := tr.holder(); return h != "" && h != first }, ttl, 20*time.Second/1000)
	second, epoch2, _ := tr.holder()
	require.Greater(t, epoch2, epoch1)
	t.Logf("graceful handover %s -> %s in %s", first, second, time.Since(left))
	h2 := latest(holdings)
	require.Equal(t, epoch2, h2.Epoch)

	// Crash: the successor's buffer goes away under it; it cannot renew,
	// stops its work, and only then does the third node take over.
	j := index(c, second)
	crashed := time.Now()
	c.Stop(j)
	require.Eventually(t, func() bool {
		h, _, _ := tr.holder()
		return h != "" && h != second
	}, 30*time.Second, 50*time.Millisecond)
	third, epoch3, _ := tr.holder()
	require.Greater(t, epoch3, epoch2)
	require.ErrorIs(t, h2.Check(ctx), cluster.ErrLost, "a former holder's side effects are fenced")
	tr.mu.Lock()
	stopped := tr.stops[second]
	started := tr.starts[len(tr.starts)-1].at
	overlap := tr.overlap
	tr.mu.Unlock()
	require.True(t, stopped.Before(started), "the crashed holder stopped (%s) before the successor started (%s)",
		stopped.Sub(crashed), started.Sub(crashed))
	// By design at least an eighth of the ttl separates them (the holder
	// stops at two thirds plus at most one 24th, its renewal tick; the
	// contender waits five sixths from a later instant, takeoverAfter);
	// the timestamps are taken by goroutines that a loaded machine (CI,
	// -race) can delay, so the check keeps half of that margin.
	t.Logf("crashed holder stopped %s before the successor started (design: at least %s)", started.Sub(stopped), ttl/8)
	require.GreaterOrEqual(t, started.Sub(stopped), ttl/16, "a margin separates them")
	require.Empty(t, overlap)
	t.Logf("crash takeover %s -> %s after %s (holder stopped after %s)", second, third,
		started.Sub(crashed), stopped.Sub(crashed))
}

func testLog(name string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func latest(c chan *cluster.Holding) *cluster.Holding {
	h := <-c
	for len(c) > 0 {
		h = <-c
	}
	return h
}

// A graceful leave hands the lease on at once, not at the successor's next
// placement round: the leaver deletes its membership before it releases,
// and the release (a KV delete) kicks a round on the others through their
// watch of the leases bucket. With a 60 s ttl the rounds tick every 10 s;
// the holder leaves right after the first round, so a successor on a tick
// would start about 9 s later.
func TestGracefulLeaveKicksTheSuccessor(t *testing.T) {
	const ttl = 60 * time.Second
	c := buffertest.NewCluster(t, 3, buffertest.Config())
	tr := newTracker()
	began := time.Now()
	nodes := startManagers(t, c, ttl, tr, nil)
	var first string
	require.Eventually(t, func() bool { first, _, _ = tr.holder(); return first != "" },
		ttl/6-2*time.Second, 20*time.Millisecond, "a holder from the first round")
	left := time.Now()
	require.NoError(t, nodes[index(c, first)].m.Shutdown(context.Background()))
	require.Eventually(t, func() bool { h, _, _ := tr.holder(); return h != "" && h != first },
		4*time.Second, 20*time.Millisecond, "a successor before the next tick (%s after start)", ttl/6)
	second, _, _ := tr.holder()
	t.Logf("%s left %s after start; %s took over %s later", first, left.Sub(began).Round(time.Millisecond),
		second, time.Since(left).Round(time.Millisecond))
}

// A holder that goes silent makes the node next in placement, and only
// it, prepare the takeover, once, a third of the ttl after the last
// renewal it saw: after the holder's work stopped is not required (the
// preparation has no side effect), before the successor's work starts is
// the point. A healthy holder makes no one prepare.
func TestSilentHolderPreparesItsSuccessor(t *testing.T) {
	const ttl = 3 * time.Second
	c := buffertest.NewCluster(t, 3, buffertest.Config())
	tr := newTracker()
	startManagers(t, c, ttl, tr, nil)
	var first string
	require.Eventually(t, func() bool { first, _, _ = tr.holder(); return first != "" },
		20*time.Second, 20*time.Millisecond, "a holder")
	time.Sleep(2 * ttl) // renewals going on: nobody prepares
	tr.mu.Lock()
	require.Empty(t, tr.prepares, "prepared while the holder renewed")
	tr.mu.Unlock()

	crashed := time.Now()
	c.Stop(index(c, first))
	var second string
	require.Eventually(t, func() bool { second, _, _ = tr.holder(); return second != "" && second != first },
		30*time.Second, 20*time.Millisecond, "a successor")
	tr.mu.Lock()
	defer tr.mu.Unlock()
	started := tr.starts[len(tr.starts)-1].at
	require.Len(t, tr.prepares, 1, "one preparation: %v", tr.prepares)
	p := tr.prepares[0]
	require.Equal(t, second, p.node, "the successor prepared")
	require.True(t, p.at.Before(started), "prepared before its work started")
	t.Logf("holder silent from %s: prepared after %s, took over after %s", crashed.Format(time.StampMilli),
		p.at.Sub(crashed).Round(time.Millisecond), started.Sub(crashed).Round(time.Millisecond))
	// A third of the ttl after the last renewal seen, which came at most
	// a sixth (plus a renewal tick) before the crash.
	require.GreaterOrEqual(t, p.at.Sub(crashed), ttl/3-ttl/6-ttl/24, "not before the holder missed renewals")
}

// A renewal committed late (the leases bucket's new leader took a crashed
// holder's last write seconds after it was sent) does not restart the wait
// before a takeover: the write's clock stamp, set against the holder's
// earlier prompt writes, shows when it was sent. A holder (written here by
// hand, as the crashed node's last words) renews every sixth of the ttl,
// then its last write arrives carrying a stamp 0.6 ttl old. The contender
// takes over five sixths of the ttl after that sending, not after it saw
// the write (which would be 2.5 s later at this ttl).
func TestLateRenewalDoesNotRestartTheWait(t *testing.T) {
	const ttl = 3 * time.Second
	c := buffertest.NewCluster(t, 3, buffertest.Config())
	tr := newTracker()
	ctx := context.Background()
	m, err := cluster.New(cluster.Config{NodeName: "contender", TTL: ttl, Replicas: 3},
		c.Nodes[0].JetStream(), testLog("contender"), prometheus.NewRegistry())
	require.NoError(t, err)
	m.Register("lake", tr.work("contender", nil))
	require.NoError(t, m.Open(ctx))
	kv, err := c.Nodes[1].JetStream().KeyValue(ctx, cluster.LeasesBucket)
	require.NoError(t, err)

	origin := time.Now()
	write := func(rev uint64, sentAgo time.Duration) uint64 {
		t.Helper()
		v := fmt.Sprintf(`{"holder":"ghost","nonce":"g1","epoch":1,"sent":%d}`, int64(time.Since(origin)-sentAgo))
		var next uint64
		var err error
		if rev == 0 {
			next, err = kv.Create(ctx, "lake", []byte(v))
		} else {
			next, err = kv.Update(ctx, "lake", []byte(v), rev)
		}
		require.NoError(t, err)
		return next
	}
	rev := write(0, 0)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for range 6 { // a ttl of prompt renewals, seen through the watch
		time.Sleep(ttl / 6)
		rev = write(rev, 0)
	}
	const late = ttl * 6 / 10
	write(rev, late)
	committed := time.Now()
	require.Eventually(t, func() bool { h, _, _ := tr.holder(); return h == "contender" },
		2*ttl, 10*time.Millisecond, "the contender takes the abandoned lease over")
	tr.mu.Lock()
	took := tr.starts[0].at.Sub(committed)
	tr.mu.Unlock()
	t.Logf("late write seen; taken over %s later (sent %s before it was seen; a wait from the sight: %s)",
		took.Round(time.Millisecond), late, ttl*5/6)
	require.GreaterOrEqual(t, took, ttl*5/6-late-ttl/24, "not before five sixths of the ttl after the sending")
	require.Less(t, took, ttl*5/6-late/2, "the wait counted from the sending, not from the sight")
}

// hungMembers is a client whose members bucket stops answering once hang
// is set (every call waits for its context), as during an election of that
// bucket after its leader's node died; the leases bucket is untouched.
type hungMembers struct {
	jetstream.JetStream
	hang, read atomic.Bool
}

func (j *hungMembers) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	kv, err := j.JetStream.KeyValue(ctx, bucket)
	if err != nil || bucket != cluster.MembersBucket {
		return kv, err
	}
	return &hungKV{KeyValue: kv, j: j}, nil
}

func (j *hungMembers) CreateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := j.JetStream.CreateKeyValue(ctx, cfg)
	if err != nil || cfg.Bucket != cluster.MembersBucket {
		return kv, err
	}
	return &hungKV{KeyValue: kv, j: j}, nil
}

type hungKV struct {
	jetstream.KeyValue
	j *hungMembers
}

func (kv *hungKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if kv.j.hang.Load() {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return kv.KeyValue.Put(ctx, key, value)
}

func (kv *hungKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if kv.j.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return kv.KeyValue.Get(ctx, key)
}

func (kv *hungKV) ListKeys(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyLister, error) {
	if kv.j.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	defer kv.j.read.Store(true)
	return kv.KeyValue.ListKeys(ctx, opts...)
}

// A crashed holder's leases are taken over when the wait is over even
// while the members bucket does not answer (its election after its
// leader's node died can outlast the wait): placement rounds do not wait
// for heartbeats and member reads, which run beside them. A hand-written
// holder stops renewing three leases a little apart; each must be taken
// five sixths of the ttl after its last renewal. With rounds behind a
// heartbeat and a read that wait out their timeouts (a third and half of
// the ttl), at most one of the three could be.
func TestTakeoverIsNotHeldUpByTheMembersBucket(t *testing.T) {
	const ttl = 3 * time.Second
	c := buffertest.NewCluster(t, 3, buffertest.Config())
	ctx := context.Background()
	js := &hungMembers{JetStream: c.Nodes[0].JetStream()}
	m, err := cluster.New(cluster.Config{NodeName: "contender", TTL: ttl, Replicas: 3}, js,
		testLog("contender"), prometheus.NewRegistry())
	require.NoError(t, err)
	names := []string{"a", "b", "c"}
	var mu sync.Mutex
	started := map[string]time.Time{}
	for _, name := range names {
		m.Register(name, func(ctx context.Context, h *cluster.Holding) error {
			mu.Lock()
			started[name] = time.Now()
			mu.Unlock()
			<-ctx.Done()
			return nil
		})
	}
	require.NoError(t, m.Open(ctx))
	kv, err := c.Nodes[1].JetStream().KeyValue(ctx, cluster.LeasesBucket)
	require.NoError(t, err)
	origin := time.Now()
	revs := map[string]uint64{}
	write := func(name string) time.Time {
		t.Helper()
		v := fmt.Sprintf(`{"holder":"ghost","nonce":"g1","epoch":1,"sent":%d}`, int64(time.Since(origin)))
		var err error
		if revs[name] == 0 {
			revs[name], err = kv.Create(ctx, name, []byte(v))
		} else {
			revs[name], err = kv.Update(ctx, name, []byte(v), revs[name])
		}
		require.NoError(t, err)
		return time.Now()
	}
	for _, name := range names {
		write(name)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, js.read.Load, 10*time.Second, 10*time.Millisecond, "the contender read the members once")
	time.Sleep(ttl / 10) // that read's gets
	js.hang.Store(true)

	// The ghost renews every sixth of the ttl, then stops renewing a, b
	// and c four fifteenths of the ttl apart (0.8 s; a round stuck behind
	// the members bucket took 2.5 s).
	last := map[string]time.Time{}
	stopAt := map[string]int{"a": 6, "b": 7, "c": 8} // in sixths of the ttl
	for tick := 1; tick <= 8; tick++ {
		time.Sleep(ttl / 6)
		for _, name := range names {
			if tick <= stopAt[name] {
				last[name] = write(name)
			}
		}
		if tick >= 6 {
			time.Sleep(ttl*4/15 - ttl/6)
		}
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(started) == len(names) },
		3*ttl, 10*time.Millisecond, "the contender takes every abandoned lease over")
	mu.Lock()
	defer mu.Unlock()
	for _, name := range names {
		took := started[name].Sub(last[name])
		t.Logf("lease %s taken over %s after its last renewal (the wait is %s)", name, took.Round(time.Millisecond), ttl*5/6)
		require.GreaterOrEqual(t, took, ttl*5/6-ttl/24, "lease %s: not before five sixths of the ttl", name)
		require.Less(t, took, ttl*5/6+ttl/10, "lease %s: taken when the wait was over, not a round later", name)
	}
}

// A graceful leave deletes the lease even when its last renewal was
// committed without the holder hearing of it: Run stops the renewals
// before it releases and cancels the one in flight, and the renewal can
// still be committed. In a rolling restart, four of four partitions of the
// nodes leaving waited out the takeover (5 s at a 6 s ttl) because the
// release's compare-and-swap named the revision before it. Here the
// renewal is written by hand, with the holder's own record, before the
// holder's first renewal (every 10 s at a 60 s ttl); the successor must
// start within a few seconds, not after five sixths of the ttl.
func TestReleaseAfterAnUnheardRenewal(t *testing.T) {
	const ttl = 60 * time.Second
	c := buffertest.NewCluster(t, 3, buffertest.Config())
	tr := newTracker()
	nodes := startManagers(t, c, ttl, tr, nil)
	var first string
	var epoch uint64
	require.Eventually(t, func() bool { first, epoch, _ = tr.holder(); return first != "" },
		ttl/6-2*time.Second, 20*time.Millisecond, "a holder from the first round")
	ctx := context.Background()
	kv, err := c.Nodes[(index(c, first)+1)%3].JetStream().KeyValue(ctx, cluster.LeasesBucket)
	require.NoError(t, err)
	e, err := kv.Get(ctx, "lake")
	require.NoError(t, err)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(e.Value(), &rec))
	require.Equal(t, first, rec["holder"])
	rec["epoch"] = epoch // what the holder's renewal writes
	v, err := json.Marshal(rec)
	require.NoError(t, err)
	_, err = kv.Update(ctx, "lake", v, e.Revision())
	require.NoError(t, err)

	left := time.Now()
	require.NoError(t, nodes[index(c, first)].m.Shutdown(ctx))
	require.Eventually(t, func() bool { h, _, _ := tr.holder(); return h != "" && h != first },
		5*time.Second, 20*time.Millisecond, "a successor soon after the release (the wait for an abandoned lease is %s)", ttl*5/6)
	second, _, _ := tr.holder()
	t.Logf("%s left; %s took over %s later", first, second, time.Since(left).Round(time.Millisecond))
}
