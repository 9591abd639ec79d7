package process_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/state"
)

// erasedSet is a hand-written stand-in for the regulation registry.
type erasedSet struct {
	mu      sync.Mutex
	ids     map[string]bool
	reports []report
}

type report struct {
	reg            string
	part           int
	found, removed int64
}

func (e *erasedSet) ErasedEvent(id string, _ time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ids[id]
}

func (e *erasedSet) Forgotten(_ context.Context, reg string, part int, found, removed int64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reports = append(e.reports, report{reg, part, found, removed})
	return nil
}

func (e *erasedSet) erase(ids ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		e.ids[id] = true
	}
}

func (e *erasedSet) got() []report {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]report(nil), e.reports...)
}

// keysOf counts the keys of partition p that belong to user: under its
// user prefix, its open-index entries and its outbox entries.
func keysOf(t *testing.T, st *state.Store, p int, user string) int {
	n := 0
	require.NoError(t, st.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: state.PartitionPrefix(p), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			v, _ := it.Item().ValueCopy(nil)
			switch {
			case len(k) > 3 && k[3] == 'u' && string(k[:len(state.UserPrefix(p, user))]) == string(state.UserPrefix(p, user)):
				n++
			case len(k) > 3 && k[3] == 'o' && string(k[len(state.OpenIndexPrefix(p))+8:]) == user:
				n++
			case len(k) > 3 && k[3] == 'x' && json.Valid(v) && string(v) != "" && containsUser(v, user):
				n++
			}
		}
		return nil
	}))
	return n
}

func containsUser(v []byte, user string) bool {
	var s struct {
		UserKey string `json:"userKey"`
	}
	return json.Unmarshal(v, &s) == nil && s.UserKey == user
}

func forget(t *testing.T, r *rig, reg, msgID string, ids ...string) {
	body, err := json.Marshal(event.Forget{Regulation: reg, IDs: ids})
	require.NoError(t, err)
	_, err = r.b.Publish(context.Background(), event.Partition(ids[0], 4), body,
		map[string]string{event.HeaderControl: event.ControlForget, "Nats-Msg-Id": msgID})
	require.NoError(t, err)
}

// A forget control message removes every key of the user in order with
// its events, once, reports what it did, and later events of the erased
// user are skipped; other users keep everything.
func TestForgetRemovesUser(t *testing.T) {
	r := newRig(t)
	set := &erasedSet{ids: map[string]bool{}}
	r.erasures, r.forgets = set, set
	r.start()
	defer r.stop()
	api, err := serve.NewAPI(r.store, r.live, serve.DefaultConfig(), quiet, nil)
	require.NoError(t, err)
	t0 := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
	const victim = "forget-me"
	other := samePartition(victim, "keep-me")
	publish(t, r.b, append(viewing(victim, t0), viewing(other, t0)...))
	publish(t, r.b, viewing(victim, t0.Add(time.Hour))) // a second, still open session
	waitUser(t, r, victim)
	p := event.Partition(victim, 4)
	require.Positive(t, keysOf(t, r.store, p, victim))
	keep := keysOf(t, r.store, p, other)
	require.Positive(t, keep)

	set.erase(victim)
	forget(t, r, "reg-1", "forget/reg-1/0", victim)
	// Late events of the erased user (accepted before the suppression).
	late := viewing(victim, t0.Add(90*time.Minute))
	for i := range late {
		late[i].MessageID += "-late"
	}
	publish(t, r.b, late)
	waitUser(t, r, victim)
	eventually(t, 10*time.Second, func() bool { return len(set.got()) == 1 })
	rep := set.got()[0]
	require.Equal(t, report{"reg-1", p, 1, rep.removed}, rep)
	require.Positive(t, rep.removed)
	require.Zero(t, keysOf(t, r.store, p, victim), "every key of the user removed")
	require.Equal(t, keep, keysOf(t, r.store, p, other), "the other user keeps every key")
	var a sessionsAnswer
	get(t, api, "/v1/users/"+victim+"/sessions", &a)
	require.Empty(t, a.Sessions)
	get(t, api, "/v1/users/"+other+"/sessions", &a)
	require.NotEmpty(t, a.Sessions)

	// The same forget again (published past the duplicate window) removes
	// nothing and reports zero.
	forget(t, r, "reg-1", "forget/reg-1/0-again", victim)
	eventually(t, 10*time.Second, func() bool { return len(set.got()) == 2 })
	require.Equal(t, report{"reg-1", p, 0, 0}, set.got()[1])
}
