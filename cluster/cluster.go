// Package cluster gives clickpipe nodes that share a JetStream cluster
// fenced, exclusive work: leases held by compare-and-swap in a replicated
// KV bucket (the epoch is the KV revision of the holder's acquiring write),
// placed by rendezvous hashing over the live members, which announce
// themselves in a second bucket whose entries expire unless renewed.
//
// Timing rule: a holder renews every ttl/6 and stops its work once ttl*2/3
// has passed since it sent its last successful renewal (noticed within
// ttl/24); a contender takes an abandoned lease only after it has seen the
// same revision unchanged for ttl*5/6 on its own clock (takeoverAfter). The
// write a contender saw was sent before it was seen, so the old holder has
// stopped at least ttl/8 before the takeover, whatever the clocks say (only
// their rates must agree).
package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Bucket names. docs/format/cluster.md is the spec of their contents.
const (
	MembersBucket = "clickpipe_members"
	LeasesBucket  = "clickpipe_leases"
)

// ErrLost is returned by Holding.Check once the lease is not this node's.
var ErrLost = errors.New("cluster: lease lost")

// Config is what the lease manager needs.
type Config struct {
	// NodeName is this member's name.
	NodeName string
	// TTL is a lease's and a member's lifetime without renewal.
	TTL time.Duration
	// Replicas of the two KV buckets.
	Replicas int
	// Info is published with this node's membership (addresses, version).
	Info map[string]string
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("cluster: empty node name"))
	}
	if c.TTL < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("cluster: lease ttl %s is below 300ms", c.TTL))
	}
	if c.Replicas < 1 {
		errs = append(errs, fmt.Errorf("cluster: %d replicas", c.Replicas))
	}
	return errors.Join(errs...)
}

// Work is what a lease guards: it runs while the lease is held and must
// return soon after ctx is cancelled. Every side effect it makes should
// first call h.Check.
type Work func(ctx context.Context, h *Holding) error

// Manager keeps this node's membership alive and contends for the leases
// registered with it.
type Manager struct {
	cfg     Config
	js      jetstream.JetStream
	log     *slog.Logger
	metrics *metrics
	nonce   string
	// started is this incarnation's clock origin: lease records carry
	// the time since it (leaseRecord.Sent).
	started time.Time

	mu      sync.Mutex
	leases  []*lease
	members jetstream.KeyValue
	kv      jetstream.KeyValue
	stop    chan struct{}
	done    chan struct{}
	// kick asks Run for a round now: a lease was released, so a successor
	// need not wait for its next tick (a graceful handover's main wait).
	kick chan struct{}
	// reread asks the membership goroutine for a read of the members now.
	reread chan struct{}
	// since is when each member has been seen without a break since (the
	// membership goroutine only).
	since map[string]time.Time
	// beats is, per member, its entry's last revision and when this node
	// saw it change (the membership goroutine only).
	beats map[string]beat
	once  sync.Once
	// runCtx is Run's context (the preps run under it); preps are the
	// Prepare functions running, started under prepMu unless Run is
	// stopping (prepsClosed).
	runCtx      context.Context
	prepMu      sync.Mutex
	prepsClosed bool
	preps       sync.WaitGroup
	// live is the latest member view and stable its stable members
	// (refreshMembers), for the placement rounds and the timers (liveView).
	liveMu sync.Mutex
	live   []memberRecord
	stably []memberRecord
}

type beat struct {
	rev uint64
	at  time.Time
}

// New validates cfg. js is a client of the clustered buffer; nothing is
// opened yet.
func New(cfg Config, js jetstream.JetStream, log *slog.Logger, reg prometheus.Registerer) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	now := time.Now()
	m := &Manager{cfg: cfg, js: js, log: log, nonce: fmt.Sprintf("%x", now.UnixNano()), started: now,
		stop: make(chan struct{}), done: make(chan struct{}), kick: make(chan struct{}, 1),
		reread: make(chan struct{}, 1)}
	var err error
	if m.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// Register adds a lease this node contends for and the work it guards.
// Call before Run.
func (m *Manager) Register(name string, work Work) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leases = append(m.leases, &lease{name: name, work: work, m: m})
}

// Prepare gives lease name (registered) what this node does ahead of
// taking it over: prep runs in its own goroutine, once per revision of
// the lease, when the holder has not renewed for a third of the ttl and
// this node is next in placement (the takeover itself comes at five
// sixths). prep must not make a side effect the lease guards; it warms up
// what the work will need (a partition's snapshot restore), and the work
// must cope with a prep still running. Run waits for preps before it
// returns. Call before Run.
func (m *Manager) Prepare(name string, prep func(ctx context.Context)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.leases {
		if l.name == name {
			l.prep = prep
		}
	}
}

// Open creates or binds the replicated KV buckets, retrying until ctx
// ends: peers starting at the same moment race to create them, and the
// meta leader may leave a concurrent duplicate create unanswered.
func (m *Manager) Open(ctx context.Context) error {
	members, err := m.bucket(ctx, jetstream.KeyValueConfig{
		Bucket: MembersBucket, Description: "clickpipe live members (entries expire unless renewed)",
		History: 1, TTL: memberTTL * m.cfg.TTL, Storage: jetstream.FileStorage, Replicas: m.cfg.Replicas,
	})
	if err != nil {
		return err
	}
	kv, err := m.bucket(ctx, jetstream.KeyValueConfig{
		Bucket: LeasesBucket, Description: "clickpipe leases (compare-and-swap; epoch = acquiring revision)",
		History: 1, Storage: jetstream.FileStorage, Replicas: m.cfg.Replicas,
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.members, m.kv = members, kv
	m.mu.Unlock()
	return nil
}

func (m *Manager) bucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err := m.js.KeyValue(actx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = m.js.CreateKeyValue(actx, cfg)
		}
		cancel()
		if err == nil {
			return kv, nil
		}
		m.log.Info("waiting for KV bucket", "bucket", cfg.Bucket, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("opening KV bucket %s: %w", cfg.Bucket, err)
		case <-time.After(time.Duration(250+rand.IntN(500)) * time.Millisecond):
		}
	}
}

// Run heartbeats, renews, and places every lease (contending for those
// this node does not hold) until Shutdown (which releases what this node
// holds) or hard is cancelled (which stops the work and leaves the leases
// to expire). Heartbeats with member reads, renewals, the watch of the
// leases bucket and placement rounds each run on their own goroutine, so
// that a bucket without an answer delays none of the others.
func (m *Manager) Run(hard context.Context) error {
	defer close(m.done)
	m.runCtx = hard // before any goroutine or timer that may read it
	renewCtx, stopRenew := context.WithCancel(hard)
	renewed := make(chan struct{})
	go func() { defer close(renewed); m.renewLoop(renewCtx) }()
	watched := make(chan struct{})
	go func() { defer close(watched); m.watchLeases(renewCtx) }()
	m.refreshMembers(hard, true) // the first round places with a view
	membered := make(chan struct{})
	go func() { defer close(membered); m.membership(renewCtx) }()
	stop := func(release bool) {
		stopRenew()
		<-renewed
		<-watched
		<-membered // no heartbeat after stopAll deleted the membership
		m.stopAll(hard, release)
		m.prepMu.Lock()
		m.prepsClosed = true
		m.prepMu.Unlock()
		m.preps.Wait()
	}
	tick := time.NewTicker(m.cfg.TTL / 6)
	defer tick.Stop()
	m.round(hard)
	for {
		select {
		case <-hard.Done():
			stop(false)
			return nil
		case <-m.stop:
			stop(true)
			return nil
		case <-tick.C:
			m.round(hard)
		case <-m.kick:
			m.round(hard)
		}
	}
}

// watchLeases follows the leases bucket for as long as ctx lives: a
// deleted (released) lease kicks a round and a read of the members at
// once, and a write is observed when it happens (the wait before a
// takeover counts from then, and ends with a kicked round). The watch is
// an acceleration only (rounds run on their tick and read the leases
// anyway), so a watch that fails or ends is opened again after a pause.
func (m *Manager) watchLeases(ctx context.Context) {
	byName := make(map[string]*lease, len(m.leases))
	for _, l := range m.leases {
		byName[l.name] = l
	}
	defer func() {
		for _, l := range m.leases {
			l.mu.Lock()
			if l.wake != nil {
				l.wake.Stop()
			}
			if l.suspectWake != nil {
				l.suspectWake.Stop()
			}
			l.mu.Unlock()
		}
	}()
	for ctx.Err() == nil {
		w, err := m.kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err == nil {
			for e := range w.Updates() {
				switch {
				case e == nil:
				case e.Operation() != jetstream.KeyValuePut:
					m.kickRound()
					m.rereadMembers()
				case byName[e.Key()] != nil:
					rec, _ := decodeLease(e.Value())
					byName[e.Key()].observe(e.Revision(), rec, time.Now())
				}
			}
			_ = w.Stop()
		}
		select {
		case <-ctx.Done():
		case <-time.After(m.cfg.TTL / 6):
		}
	}
}

// goPrep runs prep in its own goroutine under Run's context, unless Run
// is stopping (it waits for the running ones).
func (m *Manager) goPrep(prep func(context.Context)) {
	m.prepMu.Lock()
	defer m.prepMu.Unlock()
	if !m.prepsClosed {
		m.preps.Go(func() { prep(m.runCtx) })
	}
}

// liveView is the live members of the latest view.
func (m *Manager) liveView() []memberRecord {
	m.liveMu.Lock()
	defer m.liveMu.Unlock()
	return m.live
}

// membership heartbeats and reads the members every sixth of the ttl, on
// its own goroutine: a round of placement never waits for the members
// bucket, whose election after its leader's node died can leave it without
// an answer for longer than the wait before a takeover (an abandoned
// lease was taken five seconds late behind a heartbeat and a read that
// waited out their timeouts). A released lease (rereadMembers) has the
// members read at once: a node leaving deletes its membership before it
// releases, and its successor is placed without it. A changed view kicks
// a round.
func (m *Manager) membership(ctx context.Context) {
	tick := time.NewTicker(m.cfg.TTL / 6)
	defer tick.Stop()
	for {
		beat := true
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-m.reread:
			beat = false
		}
		if m.refreshMembers(ctx, beat) {
			m.kickRound()
		}
	}
}

// rereadMembers asks the membership goroutine for a read now.
func (m *Manager) rereadMembers() {
	select {
	case m.reread <- struct{}{}:
	default: // a read is already asked for
	}
}

// refreshMembers heartbeats (with beat), reads the members and publishes
// the view; it reports whether the live or the stable members changed.
func (m *Manager) refreshMembers(ctx context.Context, beat bool) (changed bool) {
	if beat {
		m.heartbeat(ctx)
	}
	live, err := m.liveMembers(ctx)
	if err != nil {
		// During an election of the members bucket keep the last view:
		// placement only decides who contends, never who may write.
		m.log.Warn("reading cluster members; using the previous view", "err", err)
		live = m.liveView()
	} else {
		m.noteBeats(live, time.Now())
		live = m.audible(live, time.Now())
	}
	stable := m.stable(live)
	m.liveMu.Lock()
	changed = !sameNodes(m.live, live) || !sameNodes(m.stably, stable)
	m.live, m.stably = live, stable
	m.liveMu.Unlock()
	m.metrics.members.Set(float64(len(live)))
	return changed
}

func sameNodes(a, b []memberRecord) bool {
	return slices.EqualFunc(a, b, func(x, y memberRecord) bool { return x.Node == y.Node })
}

// kickRound asks Run for a placement round now.
func (m *Manager) kickRound() {
	select {
	case m.kick <- struct{}{}:
	default: // a round is already asked for
	}
}

// renewLoop renews the held leases and stops the work of any not renewed
// in time, on its own ticker.
func (m *Manager) renewLoop(ctx context.Context) {
	// A 24th of the ttl: the tick that stops the work of a lease not
	// renewed for two thirds of the ttl is that much late at most (see
	// takeoverAfter); a tick costs nothing unless a renewal is due.
	tick := time.NewTicker(m.cfg.TTL / 24)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// In parallel: with a lease per partition, one slow
			// renewal must not delay the others past their deadline.
			var wg sync.WaitGroup
			for _, l := range m.leases {
				wg.Go(func() { l.maintain(ctx) })
			}
			wg.Wait()
		}
	}
}

// get reads a key with short attempts: KV buckets allow direct gets, which
// any replica may answer, and a replica that is paused or partitioned
// never answers; another attempt likely reaches another replica.
func (m *Manager) get(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	var err error
	for range 3 {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		var e jetstream.KeyValueEntry
		e, err = kv.Get(actx, key)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrKeyNotFound) || ctx.Err() != nil {
			return e, err
		}
	}
	return nil, err
}

// Shutdown stops every guarded work, releases the leases and the
// membership, and waits for Run.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.once.Do(func() { close(m.stop) })
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// round is one placement round over the latest member view: each lease.
func (m *Manager) round(ctx context.Context) {
	m.liveMu.Lock()
	live, stable := m.live, m.stably
	m.liveMu.Unlock()
	// In parallel, like the renewals: a KV read that reaches a paused or
	// partitioned replica waits out its attempts (up to 3 s), and one lease
	// after another that made a round, and so a takeover, last leases × 3 s.
	var wg sync.WaitGroup
	for _, l := range m.leases {
		wg.Go(func() { l.place(ctx, live, desired(l.name, stable)) })
	}
	wg.Wait()
}

// memberTTL is the members bucket's TTL in lease TTLs: a member survives a
// few failed heartbeats (an election of the bucket's stream) before its
// leases are placed elsewhere.
const memberTTL = 3

// stable is the members seen without a break for two lease TTLs, and this
// node: a holder hands a lease over only to a stable member, so a member
// that flickers in and out (heartbeats failing during an election) does
// not make leases move back and forth. A member left out of live as silent
// (audible) has, once heard again, to be seen for two TTLs anew.
func (m *Manager) stable(live []memberRecord) []memberRecord {
	now := time.Now()
	seen := make(map[string]time.Time, len(live))
	var out []memberRecord
	for _, r := range live {
		t, ok := m.since[r.Node]
		if !ok {
			t = now
		}
		seen[r.Node] = t
		if r.Node == m.cfg.NodeName || now.Sub(t) >= 2*m.cfg.TTL {
			out = append(out, r)
		}
	}
	m.since = seen
	return out
}

// noteBeats records the members' entry revisions read at now.
func (m *Manager) noteBeats(live []memberRecord, now time.Time) {
	beats := make(map[string]beat, len(live))
	for _, r := range live {
		b, ok := m.beats[r.Node]
		if !ok || b.rev != r.rev {
			b = beat{rev: r.rev, at: now}
		}
		beats[r.Node] = b
	}
	m.beats = beats
}

// audible leaves out of live the silent members: their entry has not
// changed for a TTL although they heartbeat six times per TTL (paused,
// partitioned, or dead with the entry not expired yet). Placement and
// contention both use the result, so no holder hands a lease to such a
// member and no contender waits for it to take a free one: either would
// leave the lease without a working holder until the entry expired.
func (m *Manager) audible(live []memberRecord, now time.Time) []memberRecord {
	out := live[:0:0]
	for _, r := range live {
		if r.Node == m.cfg.NodeName || !m.silent(r.Node, now) {
			out = append(out, r)
		}
	}
	return out
}

// silent is whether node's entry has not changed for a TTL.
func (m *Manager) silent(node string, now time.Time) bool {
	b, ok := m.beats[node]
	return ok && now.Sub(b.at) > m.cfg.TTL
}

// SetInfo replaces what this node publishes with its membership (its
// listeners' addresses once they are bound).
func (m *Manager) SetInfo(info map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.Info = info
}

func (m *Manager) heartbeat(ctx context.Context) {
	m.mu.Lock()
	info := m.cfg.Info
	m.mu.Unlock()
	rec := memberRecord{Node: m.cfg.NodeName, Nonce: m.nonce, Info: info}
	for _, l := range m.leases {
		rec.Leases = append(rec.Leases, l.name)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.TTL/3)
	defer cancel()
	if _, err := m.members.Put(ctx, m.cfg.NodeName, rec.encode()); err != nil {
		m.log.Warn("cluster heartbeat", "err", err)
	}
}

// liveMembers lists the members whose entries have not expired.
func (m *Manager) liveMembers(ctx context.Context) ([]memberRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.TTL/2)
	defer cancel()
	return m.readMembers(ctx, m.members)
}

func (m *Manager) readMembers(ctx context.Context, kv jetstream.KeyValue) ([]memberRecord, error) {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []memberRecord
	for k := range keys.Keys() {
		e, err := m.get(ctx, kv, k)
		if err != nil {
			continue
		}
		rec, err := decodeMember(e.Value())
		if err != nil {
			continue
		}
		rec.rev = e.Revision()
		out = append(out, rec)
	}
	slices.SortFunc(out, func(a, b memberRecord) int { return cmp.Compare(a.Node, b.Node) })
	return out, nil
}

// stopAll stops every lease's work; with release (a graceful leave) it
// first deletes this node's membership, so the others' next round (kicked
// by each release) places the leases without it, then releases them.
func (m *Manager) stopAll(ctx context.Context, release bool) {
	if release {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.TTL/3)
		if err := m.members.Delete(dctx, m.cfg.NodeName); err != nil {
			m.log.Warn("leaving cluster membership", "err", err)
		}
		cancel()
	}
	var wg sync.WaitGroup
	for _, l := range m.leases {
		wg.Go(func() {
			if release {
				l.release(context.WithoutCancel(ctx))
			} else {
				l.stopWork(false)
			}
		})
	}
	wg.Wait()
}
