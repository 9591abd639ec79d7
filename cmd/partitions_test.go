package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/cluster"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

// ownerLog is a partitionHook on every node: who runs each partition's
// sessionizer now, and every time a node started one while another had
// not stopped it.
type ownerLog struct {
	mu       sync.Mutex
	owner    map[int]string
	epoch    map[int]uint64
	overlaps []string
}

type ownerHook struct {
	l    *ownerLog
	node string
}

func (h ownerHook) Acquired(_ context.Context, p int, epoch uint64) error {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	if cur, ok := h.l.owner[p]; ok && cur != h.node {
		h.l.overlaps = append(h.l.overlaps, fmt.Sprintf("%s acquired partition %d (epoch %d) while %s ran it", h.node, p, epoch, cur))
	}
	h.l.owner[p], h.l.epoch[p] = h.node, epoch
	return nil
}

func (h ownerHook) Released(_ context.Context, p int, _ bool) {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	if h.l.owner[p] == h.node {
		delete(h.l.owner, p)
	}
}

func (l *ownerLog) owners() (map[int]string, map[int]uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, e := map[int]string{}, map[int]uint64{}
	for p, n := range l.owner {
		o[p], e[p] = n, l.epoch[p]
	}
	return o, e
}

// ownNode is one node's sessionizer, lease manager and duplicate lists.
type ownNode struct {
	name  string
	store *state.Store
	proc  *process.Processor
	m     *cluster.Manager
	dups  *lakeDups
	reg   *prometheus.Registry
	stop  func()
}

func startOwnNode(t *testing.T, c *buffertest.Cluster, i int, log *ownerLog) *ownNode {
	return startOwnNodeWith(t, c, i, log, nil)
}

// startOwnNodeWith is startOwnNode whose partition fetchers go through
// wrap (fault injection).
func startOwnNodeWith(t *testing.T, c *buffertest.Cluster, i int, log *ownerLog, wrap func(process.Fetcher) process.Fetcher) *ownNode {
	t.Helper()
	ctx := context.Background()
	b, cfg := c.Nodes[i], c.Cfgs[i]
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		quiet = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.Cluster.NodeName)
	}
	n := &ownNode{name: cfg.Cluster.NodeName, reg: prometheus.NewRegistry()}
	var err error
	n.store, err = state.Open(statetest.Options(), t.TempDir(), quiet, nil)
	require.NoError(t, err)
	n.dups, err = openLakeDups(ctx, b, quiet)
	require.NoError(t, err)
	pcfg := process.DefaultConfig()
	pcfg.FetchBatch, pcfg.IdleTimeout = 8, 200*time.Millisecond
	n.proc, err = process.New(pcfg, process.Deps{Store: n.store, Partitions: cfg.Partitions, Sessions: b, Controls: b,
		Consumers: wrappedConsumers{eventsConsumers{buf: b, prefix: "process-" + n.name + "-"}, wrap}, Dynamic: true, Dups: n.dups},
		quiet, n.reg)
	require.NoError(t, err)
	n.m, err = cluster.New(cluster.Config{NodeName: n.name, TTL: cfg.Cluster.LeaseTTL, Replicas: 3},
		b.JetStream(), quiet, prometheus.NewRegistry())
	require.NoError(t, err)
	owner := &partitionOwner{proc: n.proc, hooks: []partitionHook{ownerHook{log, n.name}}, log: quiet,
		stopWait: cfg.Cluster.LeaseTTL / 3}
	owner.register(n.m, cfg.Partitions)
	require.NoError(t, n.m.Open(ctx))
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = n.proc.Run(rctx) })
	wg.Go(func() { _ = n.m.Run(rctx) })
	n.stop = func() { cancel(); wg.Wait(); _ = n.store.Close() }
	t.Cleanup(n.stop)
	return n
}

// wrappedConsumers passes every partition fetcher through wrap.
type wrappedConsumers struct {
	eventsConsumers
	wrap func(process.Fetcher) process.Fetcher
}

func (c wrappedConsumers) PartitionConsumer(ctx context.Context, p int, start uint64) (process.Fetcher, error) {
	f, err := c.eventsConsumers.PartitionConsumer(ctx, p, start)
	if err != nil || c.wrap == nil {
		return f, err
	}
	return c.wrap(f), nil
}

// gatedFetcher holds every fetch's result until the gate opens.
type gatedFetcher struct {
	f    process.Fetcher
	gate <-chan struct{}
	held chan<- struct{}
}

func (g gatedFetcher) Fetch(ctx context.Context, max int, wait time.Duration) ([]*event.Message, error) {
	msgs, err := g.f.Fetch(ctx, max, wait)
	if len(msgs) == 0 {
		return msgs, err
	}
	select {
	case g.held <- struct{}{}:
	default:
	}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return msgs, err
}

// publishUsers publishes one batch per partition (each twice for
// partition 0, so its duplicate lists are not empty) and returns the
// stream sequences by partition.
func publishUsers(t *testing.T, b *buffer.Buffer, round, partitions int, seqs map[int][]uint64) {
	t.Helper()
	encs := map[int]*event.Encoder{}
	t0 := time.Now().Add(-time.Hour).UTC()
	for u := range 40 {
		ev := event.Event{MessageID: fmt.Sprintf("r%d-u%d", round, u), Source: "web", Type: event.TypeTrack,
			Event: "Video Content Playing", UserID: fmt.Sprintf("user-%d", u), Timestamp: t0, ReceivedAt: time.Now()}
		p := event.Partition(ev.UserKey(), partitions)
		if encs[p] == nil {
			encs[p] = &event.Encoder{}
		}
		require.NoError(t, encs[p].Append(&ev))
	}
	for p, enc := range encs {
		copies := 1
		if p == 0 {
			copies = 2
		}
		for range copies {
			seq, err := b.Publish(context.Background(), p, enc.Bytes(), nil)
			require.NoError(t, err)
			seqs[p] = append(seqs[p], seq)
		}
	}
}

// lakeSees is whether reader answers every published sequence as applied,
// with the duplicate lines the partition's owner found.
func lakeSees(reader *lakeDups, owners map[int]*ownNode, seqs map[int][]uint64) bool {
	for p, ss := range seqs {
		for _, seq := range ss {
			got, applied, err := reader.Duplicates(p, seq)
			if err != nil || !applied {
				return false
			}
			want, applied, err := owners[p].store.Duplicates(p, seq)
			if err != nil || !applied || !slices.Equal(got, want) {
				return false
			}
		}
	}
	return true
}

// TestPartitionOwnershipFailover: three nodes (in-process JetStream
// cluster), partition ownership on. Each partition is run by exactly one
// node, the one its lease placed it on; a lake reader on any node sees
// every applied message's duplicate lists; after the buffer of a node
// that owns partitions goes away, the survivors take its partitions over
// (higher epochs) and consume what was published since.
func TestPartitionOwnershipFailover(t *testing.T) {
	bcfg := buffertest.Config()
	bcfg.Cluster.LeaseTTL = 3 * time.Second
	c := buffertest.NewCluster(t, 3, bcfg)
	partitions := c.Cfgs[0].Partitions
	log := &ownerLog{owner: map[int]string{}, epoch: map[int]uint64{}}
	var nodes []*ownNode
	byName := map[string]*ownNode{}
	for i := range c.Nodes {
		n := startOwnNode(t, c, i, log)
		nodes = append(nodes, n)
		byName[n.name] = n
	}
	ctx := context.Background()
	ownerNodes := func() map[int]*ownNode {
		o, _ := log.owners()
		out := map[int]*ownNode{}
		for p, name := range o {
			out[p] = byName[name]
		}
		return out
	}
	require.Eventually(t, func() bool {
		st, err := nodes[0].m.Status(ctx)
		if err != nil {
			return false
		}
		o, e := log.owners()
		held := 0
		for _, l := range st.Leases {
			var p int
			if _, err := fmt.Sscanf(l.Name, "partition-%d", &p); err == nil && o[p] == l.Holder && e[p] == l.Epoch && l.Holder == l.Desired {
				held++
			}
		}
		return held == partitions
	}, 30*time.Second, 100*time.Millisecond, "every partition run by the node its lease is placed on")

	seqs := map[int][]uint64{}
	publishUsers(t, c.Nodes[0], 1, partitions, seqs)
	require.Eventually(t, func() bool { return lakeSees(nodes[2].dups, ownerNodes(), seqs) },
		30*time.Second, 100*time.Millisecond, "the lake reader sees the owners' duplicate lists")
	dups, _, err := nodes[2].dups.Duplicates(0, seqs[0][1])
	require.NoError(t, err)
	require.NotEmpty(t, dups, "partition 0's second copy is all duplicates")

	owners, epochs := log.owners()
	victim := owners[0]
	vi := index(c, victim)
	t.Logf("owners before the crash: %v; stopping %s's buffer", owners, victim)
	c.Stop(vi)
	survivor := c.Nodes[(vi+1)%3]
	publishUsers(t, survivor, 2, partitions, seqs)
	require.Eventually(t, func() bool {
		o, e := log.owners()
		for p := range partitions {
			if o[p] == "" || o[p] == victim || (owners[p] == victim && e[p] <= epochs[p]) {
				return false
			}
		}
		return true
	}, 60*time.Second, 100*time.Millisecond, "the survivors own every partition")
	reader := byName[c.Cfgs[(vi+2)%3].Cluster.NodeName].dups
	require.Eventually(t, func() bool { return lakeSees(reader, ownerNodes(), seqs) },
		30*time.Second, 100*time.Millisecond, "the new owners applied everything and published its duplicate lists")
	owners, _ = log.owners()
	t.Logf("owners after the crash: %v", owners)
	log.mu.Lock()
	defer log.mu.Unlock()
	require.Empty(t, log.overlaps)
}

func index(c *buffertest.Cluster, name string) int {
	for i, cfg := range c.Cfgs {
		if cfg.Cluster.NodeName == name {
			return i
		}
	}
	return -1
}

// TestStolenPartitionLeaseRefusesCommit: a batch fetched while this node
// owned partition p, committed after another writer took p's lease, is
// refused (the real lease manager and sessionizer; the fetch is held
// across the theft). Negative control: built with -tags
// clickpipe_broken_no_fence the batch is committed and this test fails.
func TestStolenPartitionLeaseRefusesCommit(t *testing.T) {
	bcfg := buffertest.Config()
	bcfg.Cluster.LeaseTTL = 3 * time.Second
	c := buffertest.NewCluster(t, 3, bcfg) // a sessionizer on node 0 only
	log := &ownerLog{owner: map[int]string{}, epoch: map[int]uint64{}}
	gate, held := make(chan struct{}), make(chan struct{}, 1)
	var gateOnce sync.Once
	defer gateOnce.Do(func() { close(gate) })
	n := startOwnNodeWith(t, c, 0, log, func(f process.Fetcher) process.Fetcher {
		return gatedFetcher{f: f, gate: gate, held: held}
	})
	ctx := context.Background()
	const p = 0
	require.Eventually(t, func() bool { o, _ := log.owners(); return o[p] == n.name }, 30*time.Second, 50*time.Millisecond)

	seqs := map[int][]uint64{}
	publishUsers(t, c.Nodes[0], 1, c.Cfgs[0].Partitions, seqs)
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no fetch held")
	}
	// Another writer takes the lease; the holder's next renewal fails.
	kv, err := c.Nodes[0].JetStream().KeyValue(ctx, cluster.LeasesBucket)
	require.NoError(t, err)
	e, err := kv.Get(ctx, partitionLeaseName(p))
	require.NoError(t, err)
	rev, err := kv.Update(ctx, partitionLeaseName(p), []byte(`{"holder":"thief","nonce":"x","epoch":0}`), e.Revision())
	require.NoError(t, err)
	// The thief renews well within the ttl until the test ends, so the
	// node cannot take the lease back (a commit under a new epoch of its
	// own would be legitimate and hide a missing fence).
	thiefCtx, stopThief := context.WithCancel(ctx)
	thiefDone := make(chan struct{})
	defer func() { stopThief(); <-thiefDone }()
	go func() {
		defer close(thiefDone)
		for {
			select {
			case <-thiefCtx.Done():
				return
			case <-time.After(bcfg.Cluster.LeaseTTL / 4):
			}
			r, err := kv.Update(thiefCtx, partitionLeaseName(p), []byte(`{"holder":"thief","nonce":"x","epoch":0}`), rev)
			if err == nil {
				rev = r
			} else if thiefCtx.Err() == nil {
				t.Errorf("the thief could not renew: %v", err)
				return
			}
		}
	}()
	require.Eventually(t, func() bool { o, _ := log.owners(); return o[p] == "" }, 10*time.Second, 20*time.Millisecond,
		"the node noticed the loss and stopped the partition")
	gateOnce.Do(func() { close(gate) })

	// The held batch came back after the loss: its commit is refused.
	checkpoint := func() uint64 {
		var cp state.Checkpoint
		require.NoError(t, n.store.View(func(txn *badger.Txn) error {
			var err error
			cp, err = state.ReadCheckpoint(txn, p)
			return err
		}))
		return cp.LastSeq
	}
	require.Eventually(t, func() bool { return n.fenced(t) > 0 || checkpoint() >= seqs[p][0] },
		10*time.Second, 20*time.Millisecond, "the held batch was handled")
	require.Less(t, checkpoint(), seqs[p][0], "a batch committed after the lease was lost")
	require.Positive(t, n.fenced(t))
}

func (n *ownNode) fenced(t *testing.T) float64 {
	mfs, err := n.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "clickpipe_process_fenced_commits_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// retryStartup makes a failed start-up request again (a cluster forming)
// until it succeeds, and gives up with the last error once its time is up
// or the context ends.
func TestRetryStartup(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	calls := 0
	err := retryStartup(t.Context(), log, "flaky", time.Minute, func() error {
		if calls++; calls < 3 {
			return errors.New("context deadline exceeded")
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, calls, "retried until it succeeded")

	calls = 0
	err = retryStartup(t.Context(), log, "broken", 1500*time.Millisecond, func() error { calls++; return errors.New("still down") })
	require.EqualError(t, err, "still down")
	require.Equal(t, 3, calls, "one attempt a second (at 0, 1 and 2 s) until one fails after the time is up")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls = 0
	err = retryStartup(ctx, log, "cancelled", time.Minute, func() error { calls++; return errors.New("down") })
	require.Error(t, err)
	require.Equal(t, 1, calls, "no retry once the context ended")
}
