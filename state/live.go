package state

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Live is the in-memory view of committed state that the query API
// answers from without touching Badger: per-partition freshness, title
// aggregates and top paths. The sessionizer publishes into it after each
// commit (only what it committed), so a query never sees an effect that a
// crash could take back. It is safe for concurrent use.
type Live struct {
	mu     sync.RWMutex
	parts  []Freshness
	titles map[string]*liveTitle
	paths  []map[string]int64
	top    []PathCount
	topOK  bool
}

// Freshness is how current one partition's serving state is.
type Freshness struct {
	// AppliedThrough: every event the buffer acknowledged before it is
	// applied (zero before the partition was first caught up).
	AppliedThrough time.Time
	// OldestPending is the publish time of the oldest acknowledged event
	// not yet applied (zero when caught up).
	OldestPending time.Time
	// Watermark is the partition's event-time watermark.
	Watermark time.Time
	// Checkpoint is the last stream sequence of the partition applied and
	// committed (read-your-writes: ingest's Clickpipe-Position header).
	Checkpoint uint64
}

type liveTitle struct {
	shares map[int]Title
	total  Title
}

// PathCount is one path and how many closed sessions took it.
type PathCount struct {
	Path     string `json:"path"`
	Sessions int64  `json:"sessions"`
}

// NewLive returns an empty view of n partitions.
func NewLive(n int) *Live {
	return &Live{parts: make([]Freshness, n), titles: map[string]*liveTitle{}, paths: make([]map[string]int64, n)}
}

// Partitions is the number of partitions.
func (l *Live) Partitions() int { return len(l.parts) }

// SetFreshness records partition p's freshness.
func (l *Live) SetFreshness(p int, f Freshness) {
	l.mu.Lock()
	l.parts[p] = f
	l.mu.Unlock()
}

// Freshness of partition p, or of all partitions together when p < 0
// (the oldest AppliedThrough and OldestPending, the lowest watermark).
func (l *Live) Freshness(p int) Freshness {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if p >= 0 && p < len(l.parts) {
		return l.parts[p]
	}
	var out Freshness
	for i, f := range l.parts {
		if i == 0 || f.AppliedThrough.Before(out.AppliedThrough) {
			out.AppliedThrough = f.AppliedThrough
		}
		if !f.OldestPending.IsZero() && (out.OldestPending.IsZero() || f.OldestPending.Before(out.OldestPending)) {
			out.OldestPending = f.OldestPending
		}
		if i == 0 || f.Watermark.Before(out.Watermark) {
			out.Watermark = f.Watermark
		}
	}
	return out
}

// PutTitle records partition p's committed share of asset.
func (l *Live) PutTitle(p int, asset string, t Title) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.putTitle(p, asset, t)
}

func (l *Live) putTitle(p int, asset string, t Title) {
	lt := l.titles[asset]
	if lt == nil {
		lt = &liveTitle{shares: map[int]Title{}}
		l.titles[asset] = lt
	}
	old := lt.shares[p]
	lt.shares[p] = t
	lt.total.Starts += t.Starts - old.Starts
	lt.total.Completions += t.Completions - old.Completions
	lt.total.WatchMs += t.WatchMs - old.WatchMs
	lt.total.RebufferMs += t.RebufferMs - old.RebufferMs
	lt.total.Minutes = addMinutes(addMinutes(lt.total.Minutes, old.Minutes, -1), t.Minutes, 1)
}

// addMinutes adds sign*src into dst, keeping the newest TitleMinutes.
func addMinutes(dst, src []Minute, sign int64) []Minute {
	for _, m := range src {
		i, ok := slices.BinarySearchFunc(dst, m.Minute, func(x Minute, t int64) int { return cmp.Compare(x.Minute, t) })
		if !ok {
			dst = slices.Insert(dst, i, Minute{Minute: m.Minute})
		}
		dst[i].Starts += sign * m.Starts
		dst[i].Viewers += sign * m.Viewers
	}
	dst = slices.DeleteFunc(dst, func(m Minute) bool { return m.Starts == 0 && m.Viewers == 0 })
	if n := len(dst); n > 0 {
		last := dst[n-1].Minute
		dst = slices.DeleteFunc(dst, func(m Minute) bool { return m.Minute <= last-TitleMinutes })
	}
	return dst
}

// Title is asset's aggregates over all partitions (minutes copied).
func (l *Live) Title(asset string) (Title, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	lt := l.titles[asset]
	if lt == nil {
		return Title{}, false
	}
	t := lt.total
	t.Minutes = slices.Clone(t.Minutes)
	return t, true
}

// TitleShare is partition p's committed share of asset (minutes copied).
func (l *Live) TitleShare(p int, asset string) (Title, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	lt := l.titles[asset]
	if lt == nil {
		return Title{}, false
	}
	t, ok := lt.shares[p]
	t.Minutes = slices.Clone(t.Minutes)
	return t, ok
}

// Paths is partition p's committed top-paths share (a copy).
func (l *Live) Paths(p int) map[string]int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if p < 0 || p >= len(l.paths) {
		return nil
	}
	return maps.Clone(l.paths[p])
}

// PutPaths records partition p's committed top-paths share.
func (l *Live) PutPaths(p int, paths map[string]int64) {
	l.mu.Lock()
	l.paths[p] = maps.Clone(paths)
	l.topOK = false
	l.mu.Unlock()
}

// ResetPartition forgets what partition p published (before it reloads
// from the store).
func (l *Live) ResetPartition(p int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths[p], l.topOK, l.parts[p] = nil, false, Freshness{}
	for asset, lt := range l.titles {
		if _, ok := lt.shares[p]; ok {
			l.putTitle(p, asset, Title{})
			delete(lt.shares, p)
		}
	}
}

// TopPaths is the n most taken paths over all partitions; the merge is
// cached until a partition publishes new paths.
func (l *Live) TopPaths(n int) []PathCount {
	l.mu.RLock()
	if l.topOK {
		out := l.top[:min(n, len(l.top))]
		l.mu.RUnlock()
		return slices.Clone(out)
	}
	l.mu.RUnlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	sum := map[string]int64{}
	for _, m := range l.paths {
		for p, c := range m {
			sum[p] += c
		}
	}
	top := make([]PathCount, 0, len(sum))
	for _, p := range slices.Sorted(maps.Keys(sum)) {
		top = append(top, PathCount{p, sum[p]})
	}
	slices.SortStableFunc(top, func(x, y PathCount) int { return cmp.Compare(y.Sessions, x.Sessions) })
	l.top, l.topOK = top, true
	return slices.Clone(top[:min(n, len(top))])
}

// LoadLive builds the live view of n partitions from what the store
// holds, for tools and tests that answer queries without a running
// sessionizer (freshness then only carries the watermarks).
func LoadLive(s *Store, n int) (*Live, error) {
	l := NewLive(n)
	err := s.View(func(txn *badger.Txn) error {
		for p := range n {
			cp, err := ReadCheckpoint(txn, p)
			if err != nil {
				return err
			}
			l.parts[p].Watermark = time.UnixMilli(cp.Watermark).UTC()
			if err := loadTitles(txn, p, func(asset string, t Title) { l.putTitle(p, asset, t) }); err != nil {
				return err
			}
			if _, err := Get(txn, PathsKey(p), func(v []byte) error {
				paths, err := DecodePaths(v)
				l.paths[p] = paths
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return l, err
}

// loadTitles calls fn with every title share of partition p.
func loadTitles(txn *badger.Txn, p int, fn func(asset string, t Title)) error {
	prefix := TitlePrefix(p)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		asset := string(it.Item().Key()[len(prefix):])
		if err := it.Item().Value(func(v []byte) error {
			t, err := DecodeTitle(v)
			fn(asset, t)
			return err
		}); err != nil {
			return fmt.Errorf("reading title %q of partition %d: %w", asset, p, err)
		}
	}
	return nil
}

// LoadTitles calls fn with every title share of partition p.
func LoadTitles(txn *badger.Txn, p int, fn func(asset string, t Title)) error {
	return loadTitles(txn, p, fn)
}
