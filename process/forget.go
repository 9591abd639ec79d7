package process

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/state"
)

// Deletion of users (issue 13, docs/privacy.md). A regulation publishes a
// forget control message to the partition of each id it erases; the
// partition's worker applies it in stream order with the events and under
// the same checkpoint rule: every key of the ids goes, in the transaction
// that moves the checkpoint past the message, together with a report
// record that the relay hands to the registry and then deletes. Events of
// erased ids that come later from the stream (accepted just before the
// suppression, or replayed by a rebuild) are skipped.

// Erasures says which events belong to erased users (*regulation.Registry
// satisfies it).
type Erasures interface {
	// ErasedEvent reports whether an event of id received at received is
	// erased data.
	ErasedEvent(id string, received time.Time) bool
}

// ForgetReporter is told once per partition that a regulation's forget
// was applied (*regulation.Registry satisfies it).
type ForgetReporter interface {
	Forgotten(ctx context.Context, regID string, partition int, found, removed int64) error
}

// erased reports whether an event with these ids is erased data.
func (a *applier) erased(received time.Time, ids ...string) bool {
	if a.erasures == nil {
		return false
	}
	for _, id := range ids {
		if id != "" && a.erasures.ErasedEvent(id, received) {
			return true
		}
	}
	return false
}

// forget applies one forget control message.
func (a *applier) forget(body []byte) error {
	var f event.Forget
	if err := json.Unmarshal(body, &f); err != nil || f.Regulation == "" {
		a.stats.corrupt++
		return nil
	}
	rep := state.Forgotten{Regulation: f.Regulation, AppliedAt: ms(a.now)}
	key := state.ForgottenKey(a.p, f.Regulation)
	if _, err := state.Get(a.txn, key, func(v []byte) error {
		prev, err := state.DecodeForgotten(v)
		rep.Found, rep.Removed = prev.Found, prev.Removed
		return err
	}); err != nil {
		return fmt.Errorf("reading forget report: %w", err)
	}
	for _, id := range f.IDs {
		n, err := a.forgetUser(id)
		if err != nil {
			return err
		}
		if n > 0 {
			rep.Found++
			rep.Removed += n
		}
	}
	a.set(key, state.EncodeForgotten(&rep))
	a.outboxed++
	a.stats.forgotten++
	return a.err
}

// forgetUser deletes every key of id in this partition, committed or
// written earlier in this transaction, and drops its memory. Title and
// path aggregates stay; dedup entries age out with their TTL.
func (a *applier) forgetUser(id string) (int64, error) {
	if us := a.pt.users[id]; us != nil {
		us.gone = true
		delete(a.pt.users, id)
	}
	if a.taken == nil {
		a.taken = map[string]bool{}
	}
	a.taken[id] = true
	var doomed [][]byte
	collect := func(prefix []byte, match func(k, v []byte) bool) error {
		keys, err := a.scan(prefix, match)
		doomed = append(doomed, keys...)
		return err
	}
	all := func(k, v []byte) bool { return true }
	openPrefix := state.OpenIndexPrefix(a.p)
	aliasPrefix := state.AliasPrefix(a.p)
	steps := []struct {
		prefix []byte
		match  func(k, v []byte) bool
	}{
		{state.UserPrefix(a.p, id), all},
		{openPrefix, func(k, _ []byte) bool { return len(k) >= len(openPrefix)+8 && string(k[len(openPrefix)+8:]) == id }},
		{state.AliasKey(a.p, id), func(k, _ []byte) bool { return bytes.Equal(k, state.AliasKey(a.p, id)) }},
		{aliasPrefix, func(_, v []byte) bool { return bytes.HasPrefix(v, []byte(id+"\x00")) }},
		{state.OutboxPrefix(a.p), func(_, v []byte) bool { return outboxUser(v) == id }},
		{state.ControlPrefix(a.p), func(_, v []byte) bool { return controlInvolves(v, id) }},
	}
	for _, s := range steps {
		if err := collect(s.prefix, s.match); err != nil {
			return 0, fmt.Errorf("forgetting a user: %w", err)
		}
	}
	for _, k := range doomed {
		a.del(k)
	}
	return int64(len(doomed)), a.err
}

// scan returns the keys under prefix (this transaction's writes included)
// that match. A read-write transaction allows one iterator at a time, so
// keys are collected first and deleted after.
func (a *applier) scan(prefix []byte, match func(k, v []byte) bool) ([][]byte, error) {
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
	defer it.Close()
	var out [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		k := item.KeyCopy(nil)
		if err := item.Value(func(v []byte) error {
			if match(k, v) {
				out = append(out, k)
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// outboxUser is the user key of an outbox entry (lake session JSON).
func outboxUser(v []byte) string {
	var s struct {
		UserKey string `json:"userKey"`
	}
	_ = json.Unmarshal(v, &s)
	return s.UserKey
}

// controlInvolves reports whether a queued identity merge step moves
// state of id or into id.
func controlInvolves(v []byte, id string) bool {
	c, err := state.DecodeControl(v)
	if err != nil {
		return false
	}
	switch c.Kind {
	case controlMergeRequest:
		var req mergeRequest
		return json.Unmarshal(c.Body, &req) == nil && (req.Anon == id || req.User == id)
	case controlMergeState:
		st, err := state.DecodeMergeState(c.Body)
		return err == nil && (st.Anon == id || st.User == id)
	}
	return false
}

// reportForgets hands partition part's forget reports to the reporter and
// deletes each once it is taken (a crash in between reports again; the
// registry counts a partition once).
func (p *Processor) reportForgets(ctx context.Context, part int, fence func() error) error {
	if p.deps.Forgets == nil {
		return nil
	}
	return drainOutbox(p, state.ForgottenPrefix(part), "forget report", state.DecodeForgotten, fence, func(f state.Forgotten) error {
		if err := p.deps.Forgets.Forgotten(ctx, f.Regulation, part, f.Found, f.Removed); err != nil {
			return fmt.Errorf("reporting regulation %s: %w", f.Regulation, err)
		}
		p.log.Info("forget applied", "regulation", f.Regulation, "partition", part,
			"ids_found", f.Found, "keys_removed", f.Removed)
		return nil
	})
}
