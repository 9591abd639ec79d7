package regulation

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Publisher stores a message on partition p's events subject
// (*buffer.Buffer satisfies it).
type Publisher interface {
	Publish(ctx context.Context, p int, body []byte, hdr map[string]string) (uint64, error)
}

// Linker finds the ids identity stitching linked to ids (*state.Store
// through an adapter in cmd).
type Linker interface {
	Linked(ids []string) ([]string, error)
}

// Deps are the registry's collaborators.
type Deps struct {
	// Regulations and Users are the buckets (buffer.RegulationsBucket,
	// buffer.RegulatedUsersBucket).
	Regulations, Users jetstream.KeyValue
	// Publisher publishes forget messages; nil (rebuild) publishes none.
	Publisher Publisher
	// Linker is optional: without it, only the requested ids are covered.
	Linker     Linker
	Partitions int
	// Stores are the stores a deletion clears on this node; nil is all of
	// Stores (cmd leaves the lake ones out when the archive is disabled).
	Stores []string
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
	// ForgetOnRestart makes Open skip loading the suppressed and erased
	// ids: only requests of this run are known. It exists for the
	// reliability suite's negative control (a build that forgets the
	// suppression list on restart); never set it otherwise.
	ForgetOnRestart bool
}

// Registry is the regulations subsystem.
type Registry struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time

	// users is the in-memory copy of the users bucket; n is its size, so
	// a lookup with no regulated id at all takes no lock.
	mu    sync.RWMutex
	users map[string]status
	regs  map[string]Regulation
	// regErased is, per id, the latest erasure the regulations in memory
	// name: a request is stored before the per-id entries of its ids
	// (and another node's watcher may deliver them in either order), so
	// the erased-data rule reads both and never sees a regulation whose
	// ids it does not yet know as erased.
	regErased map[string]time.Time
	// nErased is len(regErased), so a lookup with no erasure at all takes
	// no lock.
	nErased atomic.Int64
	// revs is the bucket revision each key's memory reflects: a watcher
	// update older than a write of ours does not undo it.
	revs map[string]uint64
	n    atomic.Int64

	wake     chan struct{}
	stopping chan struct{}
	stopOnce sync.Once
	watchers []jetstream.KeyWatcher
	closeMu  sync.Mutex
	created  *prometheus.CounterVec
}

// New validates cfg and deps; it starts nothing.
func New(cfg Config, deps Deps, log *slog.Logger, reg prometheus.Registerer) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Regulations == nil || deps.Users == nil || deps.Partitions <= 0 {
		return nil, errors.New("regulation: deps need both buckets and Partitions > 0")
	}
	r := &Registry{cfg: cfg, deps: deps, log: log, now: deps.Now, users: map[string]status{},
		regs: map[string]Regulation{}, regErased: map[string]time.Time{}, revs: map[string]uint64{}, wake: make(chan struct{}, 1), stopping: make(chan struct{})}
	if r.now == nil {
		r.now = time.Now
	}
	r.created = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clickpipe_regulation_requests_total",
		Help: "Regulations stored, by type."}, []string{"type"})
	if reg != nil {
		gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clickpipe_regulation_regulated_ids",
			Help: "User ids with a suppression or an erasure in force."}, func() float64 { return float64(r.n.Load()) })
		pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clickpipe_regulation_pending",
			Help: "Regulations not yet completed in every store."}, r.pendingCount)
		for _, c := range []prometheus.Collector{r.created, gauge, pending} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering regulation metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Open loads both buckets into memory, repairs the users bucket from the
// regulations (a crash between the two writes of a request), and keeps
// watching both for changes until Close.
func (r *Registry) Open(ctx context.Context) error {
	regs, err := r.watch(ctx, r.deps.Regulations, false, r.putReg)
	if err != nil {
		return fmt.Errorf("loading %s: %w", r.deps.Regulations.Bucket(), err)
	}
	users, err := r.watch(ctx, r.deps.Users, r.deps.ForgetOnRestart, r.putUser)
	if err != nil {
		_ = regs.Stop()
		return fmt.Errorf("loading %s: %w", r.deps.Users.Bucket(), err)
	}
	r.closeMu.Lock()
	r.watchers = []jetstream.KeyWatcher{regs, users}
	r.closeMu.Unlock()
	if r.deps.ForgetOnRestart {
		r.log.Warn("BROKEN ON PURPOSE: suppressed and erased ids of earlier runs are not loaded")
	} else if err := r.repair(ctx); err != nil {
		_ = r.Close()
		return fmt.Errorf("repairing %s: %w", r.deps.Users.Bucket(), err)
	}
	r.log.Info("regulations loaded", "regulations", len(r.List()), "regulated_ids", r.n.Load())
	return nil
}

// watch reads a bucket's current values and keeps applying updates in a
// goroutine that ends when the watcher stops.
// With updatesOnly it skips the current values.
func (r *Registry) watch(ctx context.Context, kv jetstream.KeyValue, updatesOnly bool,
	put func(k string, v []byte, rev uint64, del bool)) (jetstream.KeyWatcher, error) {
	opts := []jetstream.WatchOpt{}
	if updatesOnly {
		opts = append(opts, jetstream.UpdatesOnly())
	}
	// The watch lives until Close, not until the caller's context ends.
	w, err := kv.WatchAll(context.WithoutCancel(ctx), opts...)
	if err != nil {
		return nil, err
	}
	follow := func() {
		for e := range w.Updates() {
			if e != nil {
				put(e.Key(), e.Value(), e.Revision(), e.Operation() != jetstream.KeyValuePut)
			}
		}
	}
	if updatesOnly {
		go follow()
		return w, nil
	}
	for e := range w.Updates() {
		if e == nil {
			go follow()
			return w, nil
		}
		put(e.Key(), e.Value(), e.Revision(), e.Operation() != jetstream.KeyValuePut)
	}
	return nil, errors.New("watcher stopped while loading")
}

func (r *Registry) putReg(k string, v []byte, rev uint64, del bool) {
	var reg Regulation
	if !del && json.Unmarshal(v, &reg) != nil {
		r.log.Error("undecodable regulation record; ignored", "key", k)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.newer("r/"+k, rev) {
		return
	}
	if del {
		delete(r.regs, k)
		return
	}
	r.regs[k] = reg
	if reg.Type == TypeDelete || reg.Type == TypeSuppressWithDelete {
		for _, id := range reg.UserIDs {
			r.regErased[id] = latest(r.regErased[id], reg.Created)
		}
		r.nErased.Store(int64(len(r.regErased)))
	}
}

func (r *Registry) putUser(k string, v []byte, rev uint64, del bool) {
	id, ok := userFromKey(k)
	var s status
	if !ok || (!del && json.Unmarshal(v, &s) != nil) {
		r.log.Error("undecodable regulated id entry; ignored", "key", k)
		return
	}
	r.setUser(id, s, rev, del)
}

// newer records rev for key and reports whether it is newer than what
// memory holds (r.mu held).
func (r *Registry) newer(key string, rev uint64) bool {
	if rev <= r.revs[key] {
		return false
	}
	r.revs[key] = rev
	return true
}

func (r *Registry) setUser(id string, s status, rev uint64, del bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.newer("u/"+userKey(id), rev) {
		return
	}
	if del || s.empty() {
		delete(r.users, id)
	} else {
		r.users[id] = s
	}
	r.n.Store(int64(len(r.users)))
}

// repair replays every regulation in creation order and writes the ids
// whose stored status differs from what the regulations say.
func (r *Registry) repair(ctx context.Context) error {
	want := map[string]status{}
	for _, reg := range r.ordered() {
		for _, id := range reg.UserIDs {
			want[id] = want[id].apply(&reg)
		}
	}
	for id, s := range want {
		if have, _ := r.status(id); have != s {
			if err := r.storeUser(ctx, id, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// ordered is every regulation, oldest first.
func (r *Registry) ordered() []Regulation {
	r.mu.RLock()
	out := make([]Regulation, 0, len(r.regs))
	for _, reg := range r.regs {
		out = append(out, reg)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Regulation) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

func (r *Registry) status(id string) (status, bool) {
	if r.n.Load() == 0 {
		return status{}, false
	}
	r.mu.RLock()
	s, ok := r.users[id]
	r.mu.RUnlock()
	return s, ok
}

// erasedAt is the latest erasure of id: its per-id entry's, or a
// regulation's whose per-id entries are not stored or seen yet.
func (r *Registry) erasedAt(id string) (status, time.Time) {
	if r.n.Load() == 0 && r.nErased.Load() == 0 {
		return status{}, time.Time{}
	}
	r.mu.RLock()
	s := r.users[id]
	at := latest(s.ErasedAt, r.regErased[id])
	r.mu.RUnlock()
	return s, at
}

func (r *Registry) storeUser(ctx context.Context, id string, s status) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	rev, err := r.deps.Users.Put(ctx, userKey(id), b)
	if err != nil {
		return fmt.Errorf("storing the status of a regulated id: %w", err)
	}
	r.setUser(id, s, rev, false)
	return nil
}

// Close stops the watchers. It is idempotent.
func (r *Registry) Close() error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	var errs []error
	for _, w := range r.watchers {
		if err := w.Stop(); err != nil && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, err)
		}
	}
	r.watchers = nil
	return errors.Join(errs...)
}

// Suppressed reports whether events of id (a userId or anonymousId) are
// refused at ingest.
func (r *Registry) Suppressed(id string) bool {
	s, _ := r.status(id)
	return s.Suppressed
}

// Erased reports whether a delete or suppress_with_delete covers id: its
// stored data is to be removed from every store.
func (r *Registry) Erased(id string) bool {
	_, at := r.erasedAt(id)
	return !at.IsZero()
}

// ErasedEvent reports whether an event of id received at received is
// erased data that no consumer may store: any event while the id is
// suppressed after an erasure, otherwise one received no later than the
// latest erasure request (a delete without suppression keeps collecting
// what arrives after it). A zero received counts as before.
func (r *Registry) ErasedEvent(id string, received time.Time) bool {
	s, at := r.erasedAt(id)
	if at.IsZero() {
		return false
	}
	return s.Suppressed || received.IsZero() || !received.After(at)
}

// Get returns one regulation.
func (r *Registry) Get(id string) (Regulation, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	reg, ok := r.regs[id]
	return reg, ok
}

// List returns every regulation, newest first.
func (r *Registry) List() []Regulation {
	out := r.ordered()
	slices.Reverse(out)
	return out
}

// Pending returns the regulations with work left in store, oldest first.
func (r *Registry) Pending(store string) []Regulation {
	var out []Regulation
	for _, reg := range r.ordered() {
		if p, ok := reg.Stores[store]; ok && p.Status != StatusDone {
			out = append(out, reg)
		}
	}
	return out
}

func (r *Registry) pendingCount() float64 {
	n := 0
	for _, reg := range r.ordered() {
		if reg.Status != StatusCompleted {
			n++
		}
	}
	return float64(n)
}

// Create stores a request (before it returns: the caller acknowledges
// after) and applies it to the in-memory set, so ingest refuses a newly
// suppressed id from the moment Create returns. The same id (the
// client's, else derived from type and ids) returns the stored
// regulation with created false; a client id reused for another request
// is ErrConflict.
func (r *Registry) Create(ctx context.Context, q Request, by string) (Regulation, bool, error) {
	if err := q.normalise(r.cfg.MaxUserIDs); err != nil {
		return Regulation{}, false, err
	}
	if q.ID == "" {
		q.ID = derivedID(q.Type, q.UserIDs)
	}
	if have, ok, err := r.stored(ctx, q.ID); err != nil || ok {
		return have, false, sameRequest(have, q, err)
	}
	ids := q.UserIDs
	if r.deps.Linker != nil {
		linked, err := r.deps.Linker.Linked(q.UserIDs)
		if err != nil {
			return Regulation{}, false, fmt.Errorf("finding linked ids: %w", err)
		}
		ids = linked
	}
	stores := r.deps.Stores
	if stores == nil {
		stores = Stores
	}
	reg := newRegulation(q, ids, by, r.now(), r.deps.Partitions, stores)
	b, err := json.Marshal(reg)
	if err != nil {
		return Regulation{}, false, err
	}
	rev, err := r.deps.Regulations.Create(ctx, reg.ID, b)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			have, _, gerr := r.stored(ctx, q.ID)
			return have, false, sameRequest(have, q, gerr)
		}
		return Regulation{}, false, fmt.Errorf("storing regulation: %w", err)
	}
	r.putReg(reg.ID, b, rev, false)
	for _, id := range reg.UserIDs {
		s, _ := r.status(id)
		if err := r.storeUser(ctx, id, s.apply(&reg)); err != nil {
			// Stored: the next start repairs the users bucket from it.
			return Regulation{}, false, err
		}
	}
	r.created.WithLabelValues(reg.Type).Inc()
	r.log.Info("regulation stored", "regulation", reg.ID, "type", reg.Type, "ids", len(reg.UserIDs),
		"requested_by", reg.RequestedBy)
	r.signal()
	return reg, true, nil
}

func sameRequest(have Regulation, q Request, err error) error {
	if err != nil {
		return err
	}
	if have.Type != q.Type || !slices.Equal(have.Requested, q.UserIDs) {
		return fmt.Errorf("%w: %s", ErrConflict, q.ID)
	}
	return nil
}

// stored reads a regulation from the bucket (memory may trail another
// writer).
func (r *Registry) stored(ctx context.Context, id string) (Regulation, bool, error) {
	e, err := r.deps.Regulations.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Regulation{}, false, nil
	}
	if err != nil {
		return Regulation{}, false, fmt.Errorf("reading regulation: %w", err)
	}
	var reg Regulation
	if err := json.Unmarshal(e.Value(), &reg); err != nil {
		return Regulation{}, false, fmt.Errorf("regulation %s: %w", id, err)
	}
	return reg, true, nil
}

func (r *Registry) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}
