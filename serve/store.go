package serve

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/event"
)

// ErrClosed is returned by a Store after Close.
var ErrClosed = errors.New("serve: store closed")

// maxConflictRetries bounds how often a conflicting transaction is re-run.
const maxConflictRetries = 16

// Store is the Badger serving state. It is safe for concurrent use.
type Store struct {
	cfg Config
	log *slog.Logger
	db  *badger.DB

	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	done      chan struct{}

	conflicts prometheus.Counter
	gcRuns    *prometheus.CounterVec
}

// Open opens (creating if needed) the store in dir with SyncWrites, and
// starts value-log GC. Pair with Close.
func Open(cfg Config, dir string, log *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("serve config: %w", err)
	}

	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(cfg.MemTableBytes).
		WithBlockCacheSize(cfg.BlockCacheBytes).
		WithNumVersionsToKeep(1)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("opening badger at %s: %w", dir, err)
	}
	s := &Store{cfg: cfg, log: log, db: db, stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.register(reg); err != nil {
		_ = db.Close()
		return nil, err
	}
	go s.gcLoop()
	return s, nil
}

func (s *Store) register(reg prometheus.Registerer) error {
	s.conflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "clickpipe_serve_txn_conflicts_total", Help: "Badger transaction conflicts retried."})
	s.gcRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clickpipe_serve_gc_runs_total", Help: "Value-log GC runs by result (rewritten, nothing)."}, []string{"result"})
	size := func(vlog bool) func() float64 {
		return func() float64 {
			if s.db.IsClosed() {
				return 0
			}
			l, v := s.db.Size()
			if vlog {
				return float64(v)
			}
			return float64(l)
		}
	}
	cs := []prometheus.Collector{s.conflicts, s.gcRuns,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clickpipe_serve_lsm_size_bytes", Help: "Badger LSM size."}, size(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clickpipe_serve_vlog_size_bytes", Help: "Badger value-log size."}, size(true)),
	}
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering serve metrics: %w", err)
		}
	}
	return nil
}

func (s *Store) gcLoop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		for range 8 { // rewrite at most a few files per tick
			err := s.db.RunValueLogGC(s.cfg.GCDiscardRatio)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.log.Warn("value log gc", "err", err)
				}
				s.gcRuns.WithLabelValues("nothing").Inc()
				break
			}
			s.gcRuns.WithLabelValues("rewritten").Inc()
		}
	}
}

// Close stops GC and closes Badger. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("closing badger: %w", err)
		}
	})
	return s.closeErr
}

// Healthy is nil while the store is open.
func (s *Store) Healthy() error {
	if s.db.IsClosed() {
		return ErrClosed
	}
	return nil
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(txn *badger.Txn) error) error {
	if s.db.IsClosed() {
		return ErrClosed
	}
	return s.db.View(fn)
}

// Update runs fn in one read-write transaction and commits it durably
// (fsync before return). fn is re-run from scratch on a conflict, so it
// must not keep effects outside the transaction before it commits.
// badger.ErrTxnTooBig from fn is returned unwrapped-compatible so callers
// can split their work.
func (s *Store) Update(fn func(txn *badger.Txn) error) error {
	if s.db.IsClosed() {
		return ErrClosed
	}
	for range maxConflictRetries {
		err := s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		s.conflicts.Inc()
	}
	return fmt.Errorf("serve: committing after %d conflicts: %w", maxConflictRetries, badger.ErrConflict)
}

// FirstOccurrence records pos as the first occurrence of (source,
// messageID) unless one is already recorded, and reports whether pos is
// the first occurrence. Entries expire after the dedup window. It is safe
// to call concurrently with the sessionizer; conflicts are retried.
func (s *Store) FirstOccurrence(source, messageID string, pos event.Position) (bool, error) {
	var first bool
	err := s.Update(func(txn *badger.Txn) error {
		var err error
		first, err = s.FirstOccurrenceTxn(txn, source, messageID, pos)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("dedup %s/%s: %w", source, messageID, err)
	}
	return first, nil
}

// FirstOccurrenceTxn is FirstOccurrence inside the caller's transaction.
func (s *Store) FirstOccurrenceTxn(txn *badger.Txn, source, messageID string, pos event.Position) (bool, error) {
	key := event.DedupKey(source, messageID)
	item, err := txn.Get(key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		e := badger.NewEntry(key, event.EncodePosition(pos)).WithTTL(s.cfg.DedupWindow)
		if err := txn.SetEntry(e); err != nil {
			return false, err
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading dedup index: %w", err)
	}
	var stored event.Position
	var ok bool
	if err := item.Value(func(v []byte) error { stored, ok = event.DecodePosition(v); return nil }); err != nil {
		return false, fmt.Errorf("reading dedup index: %w", err)
	}
	if !ok {
		return false, fmt.Errorf("dedup index entry for %s/%s: bad length", source, messageID)
	}
	return stored == pos, nil
}

// badgerLogger routes Badger's logs to slog; its info chatter goes to debug.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Error(fmt.Sprintf(f, a...)) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warn(fmt.Sprintf(f, a...)) }
func (l badgerLogger) Infof(f string, a ...any)    { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.log.Debug(fmt.Sprintf(f, a...)) }

// SyncWrites reports whether every commit is fsync'd before it returns
// (the exactly-once promise needs it; the invariants endpoint shows it).
func (s *Store) SyncWrites() bool { return s.db.Opts().SyncWrites }
