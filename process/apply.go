package process

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// maxPaths bounds a partition's top-paths share.
const maxPaths = 1000

// batchStats are what one committed batch did, for metrics.
type batchStats struct {
	applied, duplicates, late, reopened, merged, corrupt, closed, merges int
	erased, forgotten                                                    int
	received                                                             []time.Time
}

// applier applies one batch of one partition inside one store
// transaction. It changes the partition's in-memory state (users, titles,
// paths) directly; if the commit fails, the worker drops that memory and
// reloads the partition from the store, so nothing uncommitted survives.
type applier struct {
	cfg *Config
	p   int
	pt  *part
	txn *badger.Txn
	// erasures may be nil: nothing is erased.
	erasures Erasures
	// view reads committed state without the transaction's pending
	// writes (an iterator of a write transaction sorts all of them).
	view func(fn func(txn *badger.Txn) error) error
	// taken are users merged away in this transaction: they start empty.
	taken map[string]bool
	now   time.Time
	ps    state.Checkpoint
	err   error
	seen  map[*userSlot]bool
	// dirty users and titles of the batch, in first-touch order
	users      []*userSlot
	titles     []string
	titleSeen  map[string]bool
	pathsDirty bool
	bytes      int64
	outboxed   int
	stats      batchStats
}

func newApplier(cfg *Config, pt *part, txn *badger.Txn, view func(func(*badger.Txn) error) error, now time.Time) *applier {
	return &applier{cfg: cfg, p: pt.id, pt: pt, txn: txn, view: view, now: now, ps: pt.ps,
		seen: map[*userSlot]bool{}, titleSeen: map[string]bool{}}
}

// user returns the user's slot, loading it from the store on a miss.
func (a *applier) user(key string) (*userSlot, error) {
	us := a.pt.users[key]
	if us == nil {
		// Not in memory, so not written by this transaction: the
		// committed state is the user's (unless merged away just now).
		us = &userSlot{key: key}
		if !a.taken[key] {
			if err := a.view(func(txn *badger.Txn) error {
				var err error
				us, err = loadUser(txn, a.p, key)
				return err
			}); err != nil {
				return nil, fmt.Errorf("reading user state: %w", err)
			}
		}
		a.pt.users[key] = us
	}
	us.used = a.pt.batch
	if !a.seen[us] {
		a.seen[us] = true
		a.users = append(a.users, us)
	}
	us.dirty = true
	return us, nil
}

// loadUser reads a user's core record and bookmarks with one iteration.
func loadUser(txn *badger.Txn, p int, key string) (*userSlot, error) {
	us := &userSlot{key: key}
	prefix := state.UserPrefix(p, key)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
	defer it.Close()
	for it.Seek(append(prefix, 0)); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()[len(prefix):]
		if len(k) == 0 || k[0] == 's' {
			break // sessions follow core and bookmarks
		}
		err := item.Value(func(v []byte) error {
			switch k[0] {
			case 0:
				u, err := state.DecodeUser(v)
				us.u = u
				return err
			case 'b':
				b, err := state.DecodeBookmark(v)
				if us.bm == nil {
					us.bm = map[string]*state.Bookmark{}
				}
				us.bm[b.Asset] = &b
				return err
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return us, nil
}

func (a *applier) title(asset string) *state.Title {
	t := a.pt.titles[asset]
	if t == nil {
		t = &state.Title{}
		a.pt.titles[asset] = t
	}
	if !a.titleSeen[asset] {
		a.titleSeen[asset] = true
		a.titles = append(a.titles, asset)
	}
	return t
}

// message applies every event of one buffer message and records its
// duplicate lines for the archive.
func (a *applier) message(m *event.Message) error {
	if kind := m.Header[event.HeaderControl]; len(kind) > 0 {
		if err := a.applyControl(kind[0], m.Data, m.Published); err != nil {
			return err
		}
		a.ps.LastSeq = max(a.ps.LastSeq, m.Seq)
		return a.err
	}
	var f fields
	var dups []uint32
	err := event.Lines(m.Data, func(i int, line []byte) error {
		if !f.decode(line, a.pt.strings) || event.CheckID(f.messageID, event.MaxKeyIDBytes) != nil ||
			event.CheckID(f.source, event.MaxKeyIDBytes) != nil {
			// A poison line never blocks the partition; the archive puts
			// it in the failed table with its reason.
			a.stats.corrupt++
			return nil
		}
		if a.erased(f.receivedAt, f.userID, f.anonymousID) {
			a.stats.erased++ // erased user: never stored again (docs/privacy.md)
			return nil
		}
		first, err := a.firstOccurrence(&f, event.Position{Seq: m.Seq, Index: uint32(i)})
		if err != nil {
			return err
		}
		if !first {
			a.stats.duplicates++
			dups = append(dups, uint32(i))
			return nil
		}
		return a.event(&f)
	})
	if err != nil {
		return err
	}
	if len(dups) > 0 {
		a.setTTL(state.DupsKey(a.p, m.Seq), state.EncodeDups(dups), a.cfg.Retention)
	}
	a.ps.LastSeq = max(a.ps.LastSeq, m.Seq)
	return a.err
}

// firstOccurrence is the one dedup lookup of an event: the index maps
// (source, messageId) to the position of its first occurrence, so a
// replay of that same occurrence is still the first.
func (a *applier) firstOccurrence(f *fields, pos event.Position) (bool, error) {
	if a.cfg.noDedup {
		return true, nil
	}
	key := state.DedupKey(a.p, f.source, f.messageID)
	var stored event.Position
	var ok bool
	found, err := state.Get(a.txn, key, func(v []byte) error { stored, ok = event.DecodePosition(v); return nil })
	switch {
	case err != nil:
		return false, fmt.Errorf("reading dedup index: %w", err)
	case !found:
		a.setTTL(key, event.EncodePosition(pos), a.cfg.DedupWindow)
		return true, a.err
	case !ok:
		return false, fmt.Errorf("dedup index entry at %s: bad length", pos) // no id: logs carry no payload
	}
	return stored == pos, nil
}

// event applies one first-occurrence event.
func (a *applier) event(ev *fields) error {
	key := ev.userKey()
	if key == "" {
		return nil
	}
	us, err := a.user(key)
	if err != nil {
		return err
	}
	u := &us.u
	ts := ms(ev.timestamp)
	if a.cfg.wallClock {
		ts = ms(ev.receivedAt)
	}
	capped := ts
	if !ev.receivedAt.IsZero() {
		capped = min(ts, ms(ev.receivedAt)+a.cfg.FutureTolerance.Milliseconds())
	}
	if u.FirstSeen == 0 || ts < u.FirstSeen {
		u.FirstSeen = ts
	}
	a.closeDue(us)
	cl := a.cfg.classify(ev)
	m := state.Mark{At: ts, Kind: cl.kind, Pos: -1}
	if isPlayback(cl.kind) {
		m.Asset = a.cfg.clip(cl.p.Asset())
		if pos, ok := cl.p.PositionMillis(); ok {
			m.Pos = max(0, pos)
		}
	}
	tease := ""
	switch cl.kind {
	case kindView:
		m.Name = a.cfg.clip(cl.name)
	case kindTease:
		tease = a.cfg.clip(firstNonEmpty(cl.p.Asset(), ev.eventKey))
	}
	i := a.place(us, m, ev.platform, ev.source, tease)
	sid := u.Sessions[i].ID
	if isPlayback(cl.kind) || cl.kind == kindRemove {
		a.playback(us, &cl, ts, sid)
	}
	u.LastSession = max(u.LastSession, ts)
	if cl.kind == kindStart {
		u.LastPlay = max(u.LastPlay, ts)
	}
	if ev.typ == event.TypeIdentify && len(ev.traits) > 2 {
		a.setTraits(us, ev.traits, ts)
	}
	if anon := linkedAnon(ev); anon != "" {
		if err := a.link(us, anon, ev.messageID); err != nil {
			return err
		}
	}
	arrival := capped
	if !ev.receivedAt.IsZero() {
		arrival = ms(ev.receivedAt)
	}
	a.advance(us, capped, arrival)
	if capped > a.ps.MaxEventTime {
		a.ps.MaxEventTime = capped
		a.ps.Watermark = max(a.ps.Watermark, capped-a.cfg.AllowedLateness.Milliseconds())
	}
	a.stats.applied++
	a.stats.received = append(a.stats.received, ev.receivedAt)
	return a.err
}

// linkedAnon is the id an identify or alias links to its userId: the
// anonymousId of an identify, the previousId of an alias.
func linkedAnon(ev *fields) string {
	if ev.userID == "" {
		return ""
	}
	var other string
	switch ev.typ {
	case event.TypeIdentify:
		other = ev.anonymousID
	case event.TypeAlias:
		other = firstNonEmpty(ev.previousID, ev.anonymousID)
	}
	if other == ev.userID {
		return ""
	}
	return other
}

// setTraits merges identify traits with set semantics: per trait, the
// value of the latest event time wins; the object stays under
// max_traits_bytes (a trait that would overflow it is not kept).
func (a *applier) setTraits(us *userSlot, raw []byte, ts int64) {
	var in map[string]json.RawMessage
	if json.Unmarshal(raw, &in) != nil {
		return
	}
	cur := map[string]json.RawMessage{}
	if len(us.u.Traits) > 0 {
		_ = json.Unmarshal(us.u.Traits, &cur)
	}
	if us.u.TraitTimes == nil {
		us.u.TraitTimes = map[string]int64{}
	}
	size := len(us.u.Traits)
	for _, k := range slices.Sorted(maps.Keys(in)) {
		if at, ok := us.u.TraitTimes[k]; ok && at > ts {
			continue
		}
		if _, ok := cur[k]; !ok && (size+len(k)+len(in[k]) > a.cfg.MaxTraitsBytes || len(cur) >= maxTraits) {
			continue
		}
		size += len(in[k]) - len(cur[k])
		cur[k], us.u.TraitTimes[k] = in[k], ts
	}
	if b, err := json.Marshal(cur); err == nil && len(b) <= a.cfg.MaxTraitsBytes {
		us.u.Traits = b
	}
}

const maxTraits = 64

// idle advances the watermark of a partition that received nothing for
// idle_timeout: to wall clock minus idle_timeout minus allowed_lateness.
func (a *applier) idle() bool {
	w := ms(a.now) - (a.cfg.IdleTimeout + a.cfg.AllowedLateness).Milliseconds()
	if w <= a.ps.Watermark {
		return false
	}
	a.ps.Watermark = w
	return true
}

// closeIndexed loads the users of the open-session index that the
// watermark reached, so flush closes their sessions.
func (a *applier) closeIndexed() error {
	// Committed index entries only: a user indexed by this transaction
	// was touched by it and is closed by flush anyway.
	prefix := state.OpenIndexPrefix(a.p)
	var due []string
	if err := a.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if int64(be64(k[len(prefix):])) > a.ps.Watermark {
				break
			}
			due = append(due, string(k[len(prefix)+8:]))
		}
		return nil
	}); err != nil {
		return fmt.Errorf("reading the open-session index: %w", err)
	}
	for _, key := range due {
		if a.taken[key] {
			continue // merged away or forgotten by this transaction
		}
		if _, err := a.user(key); err != nil {
			return err
		}
	}
	return nil
}

func be64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// flush writes everything the batch changed plus the checkpoint.
func (a *applier) flush() error {
	for _, us := range a.users {
		a.flushUser(us)
	}
	for _, asset := range a.titles {
		a.setTTL(state.TitleKey(a.p, asset), state.EncodeTitle(a.pt.titles[asset]), a.cfg.UserTTL)
	}
	if a.pathsDirty {
		trimPaths(a.pt.paths)
		a.set(state.PathsKey(a.p), state.EncodePaths(a.pt.paths))
	}
	a.ps.CommittedAt = ms(a.now)
	a.set(state.CheckpointKey(a.p), state.EncodeCheckpoint(&a.ps))
	return a.err
}

func trimPaths(paths map[string]int64) {
	if len(paths) <= maxPaths {
		return
	}
	keys := slices.SortedFunc(maps.Keys(paths), func(x, y string) int {
		if c := cmpInt(paths[y], paths[x]); c != 0 {
			return c
		}
		return cmpStr(x, y)
	})
	for _, k := range keys[maxPaths:] {
		delete(paths, k)
	}
}
