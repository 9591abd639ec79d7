package process

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/event"
)

// maxPaths bounds a partition's top-paths shard.
const maxPaths = 1000

// batchStats are what one committed batch did, for metrics.
type batchStats struct {
	applied, duplicates, late, tooLate, corrupt, closed int
	received                                            []time.Time
}

// applier applies one batch inside one store transaction. It reads state
// through the transaction and keeps everything it changes in memory until
// flush, so a conflict retry simply builds a new applier.
type applier struct {
	cfg   *Config
	store Store
	p     int
	in    *interner
	hot   *userCache
	txn   *badger.Txn
	now   time.Time
	ps    event.PartitionState
	users map[string]*userSlot
	order []string
	title map[string]*event.TitleShard
	paths *event.PathShard
	stats batchStats
}

type userSlot struct {
	st       event.UserState
	oldClose int64
	oldOpen  []int64
	closed   []event.Session
}

func newApplier(cfg *Config, store Store, p int, txn *badger.Txn, now time.Time) (*applier, error) {
	a := &applier{cfg: cfg, store: store, p: p, txn: txn, now: now,
		users: map[string]*userSlot{}, title: map[string]*event.TitleShard{}}
	if _, err := getJSON(txn, event.PartitionStateKey(p), &a.ps); err != nil {
		return nil, fmt.Errorf("reading checkpoint of partition %d: %w", p, err)
	}
	return a, nil
}

// getJSON decodes key into v; found is false when the key is absent.
func getJSON(txn *badger.Txn, key []byte, v any) (bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func setJSON(txn *badger.Txn, key []byte, v any, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	e := badger.NewEntry(key, b)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	return txn.SetEntry(e)
}

func (a *applier) user(key string) (*userSlot, error) {
	if s, ok := a.users[key]; ok {
		return s, nil
	}
	s := &userSlot{}
	if st, ok := a.hot.take(key, a.now); ok {
		s.st = *st
	} else if _, err := getJSON(a.txn, event.UserStateKey(key), &s.st); err != nil {
		return nil, fmt.Errorf("reading user state: %w", err)
	}
	s.oldClose = a.cfg.nextClose(&s.st)
	for i := range s.st.Open {
		s.oldOpen = append(s.oldOpen, sessStart(&s.st.Open[i]))
	}
	a.users[key] = s
	a.order = append(a.order, key)
	return s, nil
}

func (c *Config) nextClose(u *event.UserState) int64 {
	var next int64
	for i := range u.Open {
		if at := c.closeAt(&u.Open[i]); next == 0 || at < next {
			next = at
		}
	}
	return next
}

func (a *applier) titleShard(asset string) (*event.TitleShard, error) {
	if t, ok := a.title[asset]; ok {
		return t, nil
	}
	t := &event.TitleShard{}
	if _, err := getJSON(a.txn, event.TitleShardKey(asset, a.p), t); err != nil {
		return nil, fmt.Errorf("reading title shard: %w", err)
	}
	a.title[asset] = t
	return t, nil
}

// message applies every event of one buffer message.
func (a *applier) message(m *event.Message) error {
	var f fields
	err := event.Lines(m.Data, func(i int, line []byte) error {
		if !f.decode(line, a.in) {
			a.stats.corrupt++
			return nil // a poison line never blocks the partition
		}
		return a.event(&f, event.Position{Seq: m.Seq, Index: uint32(i)})
	})
	a.ps.LastSeq = max(a.ps.LastSeq, m.Seq)
	return err
}

func (a *applier) event(ev *fields, pos event.Position) error {
	first, err := a.store.FirstOccurrenceTxn(a.txn, ev.source, ev.messageID, pos)
	if err != nil {
		return err
	}
	if !first && !brokenNoDedup {
		a.stats.duplicates++
		return nil
	}
	key := ev.userKey()
	if key == "" {
		return nil
	}
	slot, err := a.user(key)
	if err != nil {
		return err
	}
	u, ts := &slot.st, ev.timestamp.UTC()
	if brokenWallClock {
		ts = ev.receivedAt.UTC()
	}
	if u.FirstSeenAt.IsZero() || ts.Before(u.FirstSeenAt) {
		u.FirstSeenAt = ts
	}
	cl := classify(ev)
	if asset, tt := a.cfg.playback(u, &cl, ts); asset != "" {
		t, err := a.titleShard(asset)
		if err != nil {
			return err
		}
		touchTitle(t, tt, ts)
	}
	if cl.kind == kindStart && ts.After(u.LastPlayAt) {
		u.LastPlayAt = ts
	}
	if ts.Before(a.ps.Watermark) {
		u.LateEvents++
		a.stats.tooLate++
	} else {
		if ts.Before(a.ps.MaxEventTime) {
			a.stats.late++
		}
		a.cfg.assign(u, event.Mark{At: ms(ts), Kind: cl.kind, Asset: cl.p.asset(), Name: cl.name, N: 1},
			ev.platform, ev.source)
		if ts.After(u.LastSessionAt) {
			u.LastSessionAt = ts
		}
	}
	if ts.After(a.ps.MaxEventTime) {
		a.ps.MaxEventTime = ts
		if w := ts.Add(-a.cfg.AllowedLateness); w.After(a.ps.Watermark) {
			a.ps.Watermark = w
		}
	}
	a.stats.applied++
	a.stats.received = append(a.stats.received, ev.receivedAt)
	return nil
}

// idle advances the watermark of a partition that received nothing for
// idle_timeout: to wall clock minus idle_timeout minus allowed_lateness.
func (a *applier) idle() bool {
	w := a.now.Add(-a.cfg.IdleTimeout - a.cfg.AllowedLateness).UTC()
	if !w.After(a.ps.Watermark) {
		return false
	}
	a.ps.Watermark = w
	return true
}

// closeSessions closes every session of the partition that the watermark
// has passed: users from the open-session index, plus those in the batch.
func (a *applier) closeSessions() error {
	wm := ms(a.ps.Watermark)
	prefix := event.OpenIndexPrefix(a.p)
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var due []string
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if int64(binary.BigEndian.Uint64(k[len(prefix):])) > wm {
			break
		}
		due = append(due, string(k[len(prefix)+8:]))
	}
	it.Close()
	for _, u := range due {
		if _, err := a.user(u); err != nil {
			return err
		}
	}
	for _, key := range a.order {
		a.closeUser(key, a.users[key], wm)
	}
	return nil
}

func (a *applier) closeUser(key string, s *userSlot, wm int64) {
	keep := s.st.Open[:0]
	for _, o := range s.st.Open {
		if a.cfg.closeAt(&o) > wm {
			keep = append(keep, o)
			continue
		}
		rec := a.cfg.summarize(key, &o)
		rec.Version, rec.ClosedBy = 1, firstNonEmpty(o.Closing, "gap")
		s.closed = append(s.closed, rec)
		a.addDay(&s.st, &rec)
		if a.paths == nil {
			a.paths = &event.PathShard{}
		}
		if a.paths.Paths == nil {
			a.paths.Paths = map[string]int64{}
		}
		a.paths.Paths[pathOf(&rec)]++
		a.stats.closed++
	}
	s.st.Open = keep
}

const churnDays = 28

func (a *applier) addDay(u *event.UserState, s *event.Session) {
	if u.Days == nil {
		u.Days = map[int64]event.DayStats{}
	}
	day := s.Start.Unix() / 86400
	d := u.Days[day]
	d.Sessions++
	if s.BrowseAbandon {
		d.BrowseSessions++
	}
	d.WatchMs += s.WatchMs
	d.RebufferMs += s.RebufferMs
	d.Plays += s.Plays
	d.Completions += s.Completions
	u.Days[day] = d
	oldest := a.ps.Watermark.Unix()/86400 - churnDays
	maps.DeleteFunc(u.Days, func(k int64, _ event.DayStats) bool { return k <= oldest })
}

// flush writes everything the batch changed plus the checkpoint.
func (a *applier) flush() error {
	if a.paths != nil {
		if err := a.flushPaths(); err != nil {
			return err
		}
	}
	for _, key := range a.order {
		if err := a.flushUser(key, a.users[key]); err != nil {
			return fmt.Errorf("writing user state: %w", err)
		}
	}
	for asset, t := range a.title {
		if err := setJSON(a.txn, event.TitleShardKey(asset, a.p), t, a.cfg.UserTTL); err != nil {
			return fmt.Errorf("writing title shard: %w", err)
		}
	}
	a.ps.CommittedAt = a.now.UTC()
	return setJSON(a.txn, event.PartitionStateKey(a.p), &a.ps, 0)
}

func (a *applier) flushPaths() error {
	var cur event.PathShard
	if _, err := getJSON(a.txn, event.PathShardKey(a.p), &cur); err != nil {
		return fmt.Errorf("reading paths: %w", err)
	}
	if cur.Paths == nil {
		cur.Paths = map[string]int64{}
	}
	for p, n := range a.paths.Paths {
		cur.Paths[p] += n
	}
	if len(cur.Paths) > maxPaths {
		keys := slices.SortedFunc(maps.Keys(cur.Paths), func(x, y string) int { return cmpInt(cur.Paths[y], cur.Paths[x]) })
		for _, k := range keys[maxPaths:] {
			delete(cur.Paths, k)
		}
	}
	return setJSON(a.txn, event.PathShardKey(a.p), &cur, 0)
}

func (a *applier) flushUser(key string, s *userSlot) error {
	a.cfg.trimBookmarks(&s.st)
	if next := a.cfg.nextClose(&s.st); next != s.oldClose {
		if s.oldClose != 0 {
			if err := a.txn.Delete(event.OpenIndexKey(a.p, fromMs(s.oldClose), key)); err != nil {
				return err
			}
		}
		if next != 0 {
			if err := a.txn.Set(event.OpenIndexKey(a.p, fromMs(next), key), nil); err != nil {
				return err
			}
		}
	}
	live := map[int64]bool{}
	for i := range s.st.Open {
		rec := a.cfg.summarize(key, &s.st.Open[i])
		live[ms(rec.Start)] = true
		if err := setJSON(a.txn, event.UserSessionKey(key, rec.Start), &rec, a.cfg.SessionTTL); err != nil {
			return err
		}
	}
	for i := range s.closed {
		rec := &s.closed[i]
		live[ms(rec.Start)] = true
		if err := setJSON(a.txn, event.UserSessionKey(key, rec.Start), rec, a.cfg.SessionTTL); err != nil {
			return err
		}
		if err := setJSON(a.txn, event.OutboxKey(rec.SessionID, rec.Version), rec, 0); err != nil {
			return err
		}
	}
	for _, start := range s.oldOpen {
		if !live[start] { // merged into another session or moved start
			if err := a.txn.Delete(event.UserSessionKey(key, fromMs(start))); err != nil {
				return err
			}
		}
	}
	return setJSON(a.txn, event.UserStateKey(key), &s.st, a.cfg.UserTTL)
}
