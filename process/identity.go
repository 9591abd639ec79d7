package process

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// Identity stitching (docs/domain.md): an identify or alias that carries
// both an anonymous id and a user id merges the anonymous history into
// the user, exactly once. The user's partition applies the linking event;
// when the anonymous id lives in another partition, two control messages
// travel through the stream, each written to the partition's control
// outbox in the transaction that decided it and published by the relay
// with an idempotent Nats-Msg-Id:
//
//  1. merge-request, to the anonymous id's partition: in stream order
//     with the anonymous id's events, it takes the anonymous state out
//     (deleting its keys, leaving an alias to the user) and
//  2. merge-state, to the user's partition: the user adopts that state.
//
// Each step is applied once under the checkpoint rule like an event; a
// re-published message is recognised by its merge id (the alias records
// it on one side, the user's merged_from on the other).

// Control kinds (event.HeaderControl).
const (
	controlMergeRequest = "merge-request"
	controlMergeState   = "merge-state"
)

type mergeRequest struct {
	Anon    string `json:"anon"`
	User    string `json:"user"`
	MergeID string `json:"merge_id"`
}

// maxMergedFrom bounds the merge ids a user remembers.
const maxMergedFrom = 16

// maxMovedSessions bounds the closed session records that move with a
// merge (the newest).
const maxMovedSessions = 100

func mergeID(anon, user, msgID string) string {
	h := sha256.Sum256([]byte(anon + "\x00" + user + "\x00" + msgID))
	return hex.EncodeToString(h[:12])
}

// link starts merging anon into the user of us (the linking event's
// messageId makes the merge id).
func (a *applier) link(us *userSlot, anon, msgID string) error {
	id := mergeID(anon, us.key, msgID)
	if slices.Contains(us.u.MergedFrom, id) {
		return nil
	}
	pa := event.Partition(anon, a.cfg.partitions)
	if pa != a.p {
		body, err := json.Marshal(mergeRequest{Anon: anon, User: us.key, MergeID: id})
		if err != nil {
			return err
		}
		a.control(pa, controlMergeRequest, "mreq/"+id, body)
		return nil
	}
	st, ok, err := a.takeAnon(anon, us.key, id)
	if err != nil || !ok {
		return err
	}
	a.adopt(us, &st)
	return nil
}

// control queues a control message for the relay.
func (a *applier) control(target int, kind, msgID string, body []byte) {
	a.set(state.ControlKey(a.p, msgID), state.EncodeControl(&state.Control{Target: target, Kind: kind, MsgID: msgID, Body: body}))
	a.outboxed++
}

// applyControl applies one control message of this partition's subject.
func (a *applier) applyControl(kind string, body []byte, published time.Time) error {
	switch kind {
	case event.ControlForget:
		return a.forget(body)
	case controlMergeRequest:
		var req mergeRequest
		if err := json.Unmarshal(body, &req); err != nil {
			a.stats.corrupt++
			return nil
		}
		if a.erased(published, req.Anon, req.User) {
			// Merging into (or from) an erased user: the anonymous
			// history is the erased person's too.
			_, err := a.forgetUser(req.Anon)
			return err
		}
		st, ok, err := a.takeAnon(req.Anon, req.User, req.MergeID)
		if err != nil || !ok {
			return err
		}
		a.control(event.Partition(req.User, a.cfg.partitions), controlMergeState, "mstate/"+req.MergeID,
			state.EncodeMergeState(&st))
	case controlMergeState:
		st, err := state.DecodeMergeState(body)
		if err != nil {
			a.stats.corrupt++
			return nil
		}
		if a.erased(published, st.Anon, st.User) {
			return nil
		}
		us, err := a.user(st.User)
		if err != nil {
			return err
		}
		if !slices.Contains(us.u.MergedFrom, st.MergeID) {
			a.adopt(us, &st)
		}
	default:
		a.stats.corrupt++
	}
	return a.err
}

// takeAnon takes the anonymous id's state out of this partition: every
// key of it is deleted and an alias to the user (with the merge id) is
// left. ok is false when this merge already happened.
func (a *applier) takeAnon(anon, user, id string) (state.MergeState, bool, error) {
	st := state.MergeState{Anon: anon, User: user, MergeID: id}
	var prev string
	if _, err := state.Get(a.txn, state.AliasKey(a.p, anon), func(v []byte) error { prev = string(v); return nil }); err != nil {
		return st, false, fmt.Errorf("reading alias: %w", err)
	}
	if strings.HasSuffix(prev, "\x00"+id) {
		return st, false, nil
	}
	as, err := a.user(anon)
	if err != nil {
		return st, false, err
	}
	// What the watermark closed is closed, as if the next event had come
	// (the state must not depend on where batches end).
	a.closeDue(as)
	for i := range as.u.Sessions {
		if as.u.Sessions[i].NeedPub {
			a.publish(as, &as.u.Sessions[i])
		}
	}
	st.Core = as.u
	for _, b := range as.bm {
		st.Bookmarks = append(st.Bookmarks, *b)
	}
	slices.SortFunc(st.Bookmarks, func(x, y state.Bookmark) int { return cmpStr(x.Asset, y.Asset) })
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: state.SessionsPrefix(a.p, anon), PrefetchValues: true})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
		if len(st.Closed) >= maxMovedSessions {
			continue
		}
		if err := it.Item().Value(func(v []byte) error {
			s, err := state.DecodeSession(v)
			st.Closed = append(st.Closed, s)
			return err
		}); err != nil {
			it.Close()
			return st, false, err
		}
	}
	it.Close()
	for _, k := range keys {
		a.del(k)
	}
	for asset := range as.bm {
		a.del(state.BookmarkKey(a.p, anon, asset))
	}
	for _, asset := range as.deadBM {
		a.del(state.BookmarkKey(a.p, anon, asset))
	}
	if as.u.IndexedAt != 0 {
		a.del(state.OpenIndexKey(a.p, as.u.IndexedAt, anon))
	}
	// The sessions move with their published path; the user's partition
	// counts them when it publishes them again.
	for i := range as.u.Sessions {
		if p := as.u.Sessions[i].PublishedPath; p != "" {
			if n := a.pt.paths[p] - 1; n > 0 {
				a.pt.paths[p] = n
			} else {
				delete(a.pt.paths, p)
			}
			a.pathsDirty = true
			as.u.Sessions[i].PublishedPath = ""
			st.Core.Sessions[i].PublishedPath = ""
		}
	}
	a.del(state.UserKey(a.p, anon))
	a.set(state.AliasKey(a.p, anon), []byte(user+"\x00"+id))
	as.gone = true
	delete(a.pt.users, anon)
	if a.taken == nil {
		a.taken = map[string]bool{}
	}
	a.taken[anon] = true
	a.stats.merges++
	return st, true, nil
}

// adopt merges an anonymous id's state into the user: its sessions join
// the user's (overlapping ones merge, so a session that began anonymous
// keeps its path from the anonymous start), bookmarks by latest activity,
// day statistics, profile times and traits; its closed session records
// move under the user and are published again with the next version.
func (a *applier) adopt(us *userSlot, st *state.MergeState) {
	a.closeDue(us)
	u, x := &us.u, &st.Core
	if x.FirstSeen != 0 && (u.FirstSeen == 0 || x.FirstSeen < u.FirstSeen) {
		u.FirstSeen = x.FirstSeen
	}
	u.LastSession, u.LastPlay = max(u.LastSession, x.LastSession), max(u.LastPlay, x.LastPlay)
	u.LateEvents += x.LateEvents
	for _, d := range x.Days {
		addDay(u, d, 1)
	}
	var traits map[string]json.RawMessage
	_ = json.Unmarshal(x.Traits, &traits)
	for _, k := range slices.Sorted(maps.Keys(x.TraitTimes)) { // sorted: the caps apply in one order
		if cur, ok := u.TraitTimes[k]; (!ok || x.TraitTimes[k] > cur) && traits[k] != nil {
			a.setTraits(us, mustJSON(map[string]json.RawMessage{k: traits[k]}), x.TraitTimes[k])
		}
	}
	for _, s := range x.Sessions {
		if s.Version > 0 && s.Closed {
			s.NeedPub = true // published under the anonymous id: again under the user
		}
		s.PubStart = 0
		i, _ := slices.BinarySearchFunc(u.Sessions, s.Start, func(y state.Sess, t int64) int { return cmpInt(y.Start, t) })
		u.Sessions = slices.Insert(u.Sessions, i, s)
	}
	a.mergeOverlaps(us)
	for len(u.Sessions) > a.cfg.MaxSessions {
		a.retire(us, a.oldestRetirable(u))
	}
	for i := range st.Bookmarks {
		b := st.Bookmarks[i]
		if cur := us.bm[b.Asset]; cur == nil || b.LastAt > cur.LastAt {
			if us.bm == nil {
				us.bm = map[string]*state.Bookmark{}
			}
			us.bm[b.Asset] = &b
			us.touchBM(b.Asset)
		}
	}
	for i := range st.Closed {
		rec := st.Closed[i]
		if slices.ContainsFunc(u.Sessions, func(s state.Sess) bool { return s.ID == rec.SessionID }) {
			continue // in detail: published again from there
		}
		rec.UserKey = us.key
		rec.Version++
		a.setTTL(state.SessionKey(a.p, us.key, rec.Start.UnixMilli()), state.EncodeSession(&rec), a.cfg.SessionTTL)
		a.outbox(&rec)
	}
	u.MergedFrom = append(u.MergedFrom, st.MergeID)
	if n := len(u.MergedFrom) - maxMergedFrom; n > 0 {
		u.MergedFrom = slices.Delete(u.MergedFrom, 0, n)
	}
	us.dirty = true
}

// mergeOverlaps merges sessions of the user within the gap of each other
// (after an adoption), the earlier absorbing the later.
func (a *applier) mergeOverlaps(us *userSlot) {
	u := &us.u
	for i := 0; i+1 < len(u.Sessions); {
		s, n := &u.Sessions[i], &u.Sessions[i+1]
		if n.Start-s.End > a.cfg.sessGap(s) || max(s.End, n.End)-s.Start > a.cfg.SessionMax.Milliseconds() {
			i++
			continue
		}
		// Folded totals of the later one carry over; its detail joins.
		s.Clock.WatchMs += n.Clock.WatchMs
		s.Clock.PauseMs += n.Clock.PauseMs
		s.Clock.RebufferMs += n.Clock.RebufferMs
		n.Clock.WatchMs, n.Clock.PauseMs, n.Clock.RebufferMs = 0, 0, 0
		for j := range n.Marks {
			if n.Marks[j].At <= s.FoldedUntil {
				n.Marks[j].At = s.FoldedUntil + 1
			}
		}
		if s.Version > 0 || n.Version > 0 {
			s.NeedPub = s.NeedPub || s.Closed
		}
		a.merge(us, i, i+1)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
