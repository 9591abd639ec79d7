// Package state owns clickpipe's serving state: the Badger store (open,
// close, value-log GC, durable transactions), its key layout and the
// compact binary records the sessionizer (process) writes and the query
// API (serve) reads, and Live, the in-memory view of the committed
// aggregates both share. docs/format/badger.md specifies the layout.
package state

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrClosed is returned by a Store after Close.
var ErrClosed = errors.New("state: store closed")

// ErrOldLayout means the directory holds serving state of an earlier
// layout; the caller moves it aside and rebuilds from the stream.
var ErrOldLayout = errors.New("state: serving state has an earlier layout")

// Options are the Badger settings (docs/badger-tuning.md says why each).
type Options struct {
	GCInterval      time.Duration
	GCDiscardRatio  float64
	MemTableBytes   int64
	BlockCacheBytes int64
	// Compactors is the number of concurrent compaction workers (>= 2).
	Compactors int
}

// DefaultOptions are the defaults of the serve.* keys that configure the
// store.
func DefaultOptions() Options {
	return Options{GCInterval: 5 * time.Minute, GCDiscardRatio: 0.5, MemTableBytes: 64 << 20,
		BlockCacheBytes: 128 << 20, Compactors: 2}
}

// Store is the Badger serving state. It is safe for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger
	db   *badger.DB

	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	done      chan struct{}

	gcRuns *prometheus.CounterVec
}

// Open opens (creating if needed) the store in dir with SyncWrites and
// starts value-log GC. A directory of an earlier layout is refused with
// ErrOldLayout. Pair with Close.
func Open(opts Options, dir string, log *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	bo := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(opts.MemTableBytes).
		WithBlockCacheSize(opts.BlockCacheBytes).
		WithNumVersionsToKeep(1).
		WithNumCompactors(max(2, opts.Compactors)).
		// Three memtables (not five): the sessionizer keeps its hot state in
		// its own memory, Badger's memtables only absorb one commit round's
		// writes while the previous one flushes.
		WithNumMemtables(3).
		// Every key has one writer (its partition's worker; the relay
		// only deletes outbox keys nobody reads in a write transaction),
		// so read-set conflict tracking is pure cost.
		WithDetectConflicts(false)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("opening badger at %s: %w", dir, err)
	}
	if err := checkLayout(db); err != nil {
		_ = db.Close()
		return nil, err
	}
	s := &Store{opts: opts, log: log, db: db, stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.register(reg); err != nil {
		_ = db.Close()
		return nil, err
	}
	go s.gcLoop()
	return s, nil
}

// checkLayout writes the schema key into an empty store and refuses a
// store whose keys predate it.
func checkLayout(db *badger.DB) error {
	return db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(SchemaKey)
		if err == nil {
			return item.Value(func(v []byte) error {
				if string(v) != Schema {
					return fmt.Errorf("%w (layout %q, this release writes %q)", ErrOldLayout, v, Schema)
				}
				return nil
			})
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		it.Rewind()
		empty := !it.Valid()
		it.Close()
		if !empty {
			return fmt.Errorf("%w (layout 1)", ErrOldLayout)
		}
		return txn.Set(SchemaKey, []byte(Schema))
	})
}

func (s *Store) register(reg prometheus.Registerer) error {
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
	cs := []prometheus.Collector{s.gcRuns,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clickpipe_serve_lsm_size_bytes", Help: "Badger LSM size."}, size(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clickpipe_serve_vlog_size_bytes", Help: "Badger value-log size."}, size(true)),
	}
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering state metrics: %w", err)
		}
	}
	return nil
}

func (s *Store) gcLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		for range 8 { // rewrite at most a few files per tick
			err := s.db.RunValueLogGC(s.opts.GCDiscardRatio)
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

// Update runs fn once in a read-write transaction and commits it durably
// (fsync before return). It never re-runs fn: a caller that keeps state
// outside the transaction drops it when Update fails.
func (s *Store) Update(fn func(txn *badger.Txn) error) error {
	if s.db.IsClosed() {
		return ErrClosed
	}
	return s.db.Update(fn)
}

// Duplicates reports the duplicate line indexes of the events message at
// seq of partition p, once the sessionizer has applied it (applied is
// false before).
func (s *Store) Duplicates(p int, seq uint64) (dups []uint32, applied bool, err error) {
	err = s.View(func(txn *badger.Txn) error {
		cp, err := ReadCheckpoint(txn, p)
		if err != nil || cp.LastSeq < seq {
			return err
		}
		applied = true
		item, err := txn.Get(DupsKey(p, seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			dups, err = DecodeDups(v)
			return err
		})
	})
	if err != nil {
		return nil, false, fmt.Errorf("reading duplicates of partition %d sequence %d: %w", p, seq, err)
	}
	return dups, applied, nil
}

// ReadEpoch reads the epoch recorded beside partition p's checkpoint
// (0 when absent).
func ReadEpoch(txn *badger.Txn, p int) (uint64, error) {
	var epoch uint64
	_, err := Get(txn, EpochKey(p), func(b []byte) error {
		var err error
		epoch, err = DecodeEpoch(b)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reading epoch: %w", err)
	}
	return epoch, nil
}

// ReadCheckpoint reads partition p's checkpoint (zero when absent).
func ReadCheckpoint(txn *badger.Txn, p int) (Checkpoint, error) {
	var cp Checkpoint
	_, err := Get(txn, CheckpointKey(p), func(b []byte) error {
		var err error
		cp, err = DecodeCheckpoint(b)
		return err
	})
	if err != nil {
		return cp, fmt.Errorf("reading checkpoint of partition %d: %w", p, err)
	}
	return cp, nil
}

// Get calls fn with key's value; found is false when the key is absent.
func Get(txn *badger.Txn, key []byte, fn func([]byte) error) (found bool, err error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(fn)
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
