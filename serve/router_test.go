package serve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

// routedParts is the partition count of the routing tests.
const routedParts = 4

// epochs is a static ownership table: the current epoch of each
// partition as a lease watch would report it.
type epochs struct {
	mu sync.Mutex
	m  map[int]uint64
}

func (e *epochs) Epoch(p int) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m[p]
}

func (e *epochs) set(p int, epoch uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[p] = epoch
}

// routedNode is one clickpipe node as the query API sees it: its own
// Badger state, live view, NATS connection, responder and router.
type routedNode struct {
	name   string
	st     *state.Store
	api    *serve.API
	resp   *serve.Responder
	router *serve.Router
	conn   *nats.Conn
	reg    *prometheus.Registry
}

// routedCluster is n nodes sharing one embedded NATS server (each with
// its own client connection) and one ownership table.
type routedCluster struct {
	t      *testing.T
	nodes  []*routedNode
	owners *epochs
	nats   func() *nats.Conn
}

func newRoutedCluster(t *testing.T, n int, cfg serve.RouterConfig) *routedCluster {
	t.Helper()
	buf := buffertest.New(t, buffertest.Config(), "")
	c := &routedCluster{t: t, owners: &epochs{m: map[int]uint64{}}}
	c.nats = func() *nats.Conn {
		nc, err := nats.Connect("", nats.InProcessServer(buf.Server()))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return nc
	}
	for i := range n {
		c.nodes = append(c.nodes, c.newNode(fmt.Sprintf("n%d", i), cfg))
	}
	return c
}

func (c *routedCluster) newNode(name string, cfg serve.RouterConfig) *routedNode {
	t := c.t
	nd := &routedNode{name: name, st: statetest.New(t, statetest.Options(), ""), conn: c.nats(), reg: prometheus.NewRegistry()}
	nd.load()
	var err error
	nd.resp, err = serve.NewResponder(nd.api, nd.conn, name, quiet)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nd.resp.Close() })
	nd.router, err = serve.NewRouter(nd.api, nd.resp, c.owners, nd.conn, cfg, quiet, nd.reg)
	require.NoError(t, err)
	return nd
}

// load (re)builds the node's API over what its store holds, as a
// sessionizer would have published it.
func (nd *routedNode) load() {
	live, err := state.LoadLive(nd.st, routedParts)
	if err != nil {
		panic(err)
	}
	if nd.api, err = serve.NewAPI(nd.st, live, serve.DefaultConfig(), quiet, nil); err != nil {
		panic(err)
	}
}

// own makes node i the owner of p at epoch, as the ownership hooks would.
func (c *routedCluster) own(i, p int, epoch uint64) {
	c.t.Helper()
	require.NoError(c.t, c.nodes[i].resp.Acquired(context.Background(), p, epoch))
	c.owners.set(p, epoch)
}

// userIn is a user id of partition p.
func userIn(p int, prefix string) string {
	for i := 0; ; i++ {
		if u := fmt.Sprintf("%s%d", prefix, i); event.Partition(u, routedParts) == p {
			return u
		}
	}
}

// get GETs path from h and returns the recorded answer.
func get(h http.Handler, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct{ Code, Error string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), rec.Body.String())
	require.NotEmpty(t, e.Error)
	return e.Code
}

// putSessions writes n closed sessions of user into st.
func putSessions(t testing.TB, st *state.Store, user string, n int) {
	t0 := time.Date(2026, 5, 1, 18, 0, 0, 0, time.UTC)
	for i := range n {
		start := t0.Add(time.Duration(i) * time.Hour)
		put(t, st, state.SessionKey(event.Partition(user, routedParts), user, start.UnixMilli()), state.EncodeSession(
			&event.Session{SessionID: fmt.Sprintf("%s-s%d", user, i), UserKey: user, Start: start, End: start,
				ClicksToPlay: -1, TimeToPlayMs: -1, ClosedBy: "gap"}))
	}
}

func TestRoutedUserQueryIsTheOwnersAnswer(t *testing.T) {
	c := newRoutedCluster(t, 3, serve.DefaultRouterConfig())
	for p := range routedParts {
		c.own(p%3, p, uint64(10+p))
	}
	for p := range routedParts {
		user := userIn(p, "u")
		owner := c.nodes[p%3]
		putSessions(t, owner.st, user, 3)
		for _, path := range []string{"/v1/users/" + user + "/sessions?limit=2", "/v1/users/" + user + "/profile",
			"/v1/users/" + user + "/continue-watching", "/v1/users/" + user + "/sessions?limit=0"} {
			want := get(owner.api, path)
			for _, nd := range c.nodes {
				t.Run(fmt.Sprintf("p%d/%s%s", p, nd.name, path), func(t *testing.T) {
					got := get(nd.router, path)
					require.Equal(t, want.Code, got.Code)
					require.JSONEq(t, want.Body.String(), got.Body.String())
					require.Equal(t, want.Header().Get("Content-Type"), got.Header().Get("Content-Type"))
					require.Equal(t, fmt.Sprint(10+p), got.Header().Get(serve.HeaderEpoch))
					require.Equal(t, owner.name, got.Header().Get(serve.HeaderNode))
				})
			}
		}
	}
	require.Len(t, decode(t, get(c.nodes[1].router, "/v1/users/"+userIn(0, "u")+"/sessions"))["sessions"], 3,
		"the owner's sessions, which node 1's store does not have")
	for _, nd := range c.nodes {
		require.Positive(t, counter(t, nd.reg, "local"), "%s answers its own partitions without a hop", nd.name)
		require.Positive(t, counter(t, nd.reg, "remote"), "%s asks the other owners", nd.name)
	}
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var v map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v))
	return v
}

func TestStaleEpochIsRejected(t *testing.T) {
	c := newRoutedCluster(t, 2, serve.DefaultRouterConfig())
	user := userIn(1, "u")
	putSessions(t, c.nodes[0].st, user, 1)
	c.own(0, 1, 10)
	c.owners.set(1, 12) // the lease moved on: node 0 is a former owner that still answers

	rec := get(c.nodes[1].router, "/v1/users/"+user+"/sessions")
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, "stale_owner", errorCode(t, rec))
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Equal(t, 2.0, counter(t, c.nodes[1].reg, "stale"), "rejected, asked again once, rejected")

	rec = get(c.nodes[0].router, "/v1/users/"+user+"/sessions")
	require.Equal(t, "stale_owner", errorCode(t, rec), "the former owner does not answer from its own store either")

	c.owners.set(1, 9) // a lease watch behind the owner: a newer epoch is accepted
	require.Equal(t, "10", get(c.nodes[1].router, "/v1/users/"+user+"/sessions").Header().Get(serve.HeaderEpoch))
}

// counter is clickpipe_serve_routed_queries_total{result}.
func counter(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "clickpipe_serve_routed_queries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestNoOwnerIs503WithRetryAfter(t *testing.T) {
	cfg := serve.DefaultRouterConfig()
	cfg.Timeout = 300 * time.Millisecond
	c := newRoutedCluster(t, 2, cfg)
	c.own(0, 0, 5)
	silent := c.nats()
	_, err := silent.Subscribe(serve.Subject(2), func(*nats.Msg) {}) // an owner that never answers
	require.NoError(t, err)
	require.NoError(t, silent.Flush())

	for _, tc := range []struct {
		p    int
		code string
	}{{1, "no_owner"}, {2, "owner_timeout"}} {
		t.Run(tc.code, func(t *testing.T) {
			rec := get(c.nodes[0].router, "/v1/users/"+userIn(tc.p, "u")+"/profile")
			require.Equal(t, http.StatusServiceUnavailable, rec.Code)
			require.Equal(t, tc.code, errorCode(t, rec))
			require.Equal(t, "1", rec.Header().Get("Retry-After"))
		})
	}
	c.nodes[0].resp.Released(context.Background(), 0, true)
	rec := get(c.nodes[1].router, "/v1/users/"+userIn(0, "u")+"/profile")
	require.Equal(t, "no_owner", errorCode(t, rec), "a released partition is no longer answered")
}

// TestAliasSecondHop: an anonymous id merged into a user of another
// partition owned by another node is answered by that node, as one node
// answers it from one store.
func TestAliasSecondHop(t *testing.T) {
	c := newRoutedCluster(t, 3, serve.DefaultRouterConfig())
	anon, merged := userIn(0, "anon-"), userIn(2, "u")
	c.own(0, 0, 3)
	c.own(0, 1, 4)
	c.own(1, 2, 7)
	c.own(2, 3, 8)
	put(t, c.nodes[0].st, state.AliasKey(0, anon), []byte(merged+"\x00m1"))
	putSessions(t, c.nodes[1].st, merged, 2)

	one := statetest.New(t, statetest.Options(), "") // the same data on one node
	put(t, one, state.AliasKey(0, anon), []byte(merged+"\x00m1"))
	putSessions(t, one, merged, 2)
	live, err := state.LoadLive(one, routedParts)
	require.NoError(t, err)
	single, err := serve.NewAPI(one, live, serve.DefaultConfig(), quiet, nil)
	require.NoError(t, err)

	path := "/v1/users/" + anon + "/sessions?limit=1"
	want := get(single, path)
	require.Equal(t, merged, decode(t, want)["user_id"])
	for _, nd := range c.nodes {
		t.Run(nd.name, func(t *testing.T) {
			got := get(nd.router, path)
			require.Equal(t, http.StatusOK, got.Code, got.Body.String())
			require.JSONEq(t, want.Body.String(), got.Body.String())
			require.Equal(t, "n1", got.Header().Get(serve.HeaderNode), "the merged user's owner")
			require.Equal(t, "7", got.Header().Get(serve.HeaderEpoch))
		})
	}

	c.nodes[1].resp.Released(context.Background(), 2, true)
	c.owners.set(2, 0)
	rec := get(c.nodes[2].router, path)
	require.Equal(t, "no_owner", errorCode(t, rec), "the second hop has no owner")
}

// TestGatheredAggregates: title stats and top paths are gathered from the
// owners of every partition and equal one node's answer over all of them;
// a partition without an owner fails the whole answer.
func TestGatheredAggregates(t *testing.T) {
	c := newRoutedCluster(t, 3, serve.DefaultRouterConfig())
	one := statetest.New(t, statetest.Options(), "")
	long := time.Now().Add(-time.Hour).Unix() / 60 // minutes no longer current: answers do not depend on the clock
	for p := range routedParts {
		owner := c.nodes[p%3]
		title := state.EncodeTitle(&state.Title{Starts: int64(p + 1), Completions: 1, WatchMs: 3_600_000 * int64(p),
			RebufferMs: 1000, Minutes: []state.Minute{{Minute: long, Starts: 1, Viewers: int64(p)}}})
		paths := state.EncodePaths(map[string]int64{"home > play": int64(p), fmt.Sprintf("p%d > abandon", p): 1})
		cp := state.EncodeCheckpoint(&state.Checkpoint{LastSeq: 9, Watermark: time.Date(2026, 5, 1, 18, p, 0, 0, time.UTC).UnixMilli()})
		for _, st := range []*state.Store{owner.st, one} {
			put(t, st, state.TitleKey(p, "ep1"), title)
			put(t, st, state.PathsKey(p), paths)
			put(t, st, state.CheckpointKey(p), cp)
		}
	}
	for _, nd := range c.nodes {
		nd.load()
		nd.resp, _ = serve.NewResponder(nd.api, nd.conn, nd.name, quiet)
		t.Cleanup(func() { _ = nd.resp.Close() })
		var err error
		nd.router, err = serve.NewRouter(nd.api, nd.resp, c.owners, nd.conn, serve.DefaultRouterConfig(), quiet, nil)
		require.NoError(t, err)
	}
	for p := range routedParts {
		c.own(p%3, p, uint64(p+1))
	}
	live, err := state.LoadLive(one, routedParts)
	require.NoError(t, err)
	single, err := serve.NewAPI(one, live, serve.DefaultConfig(), quiet, nil)
	require.NoError(t, err)

	for _, path := range []string{"/v1/titles/ep1/stats", "/v1/paths/top", "/v1/titles/none/stats"} {
		want := decode(t, get(single, path))
		delete(want, "minute")
		for _, nd := range c.nodes {
			t.Run(nd.name+path, func(t *testing.T) {
				got := decode(t, get(nd.router, path))
				delete(got, "minute")
				require.Equal(t, want, got)
			})
		}
	}
	require.Len(t, decode(t, get(c.nodes[0].router, "/v1/paths/top"))["paths"], routedParts+1, "every partition's paths")

	c.nodes[2].resp.Released(context.Background(), 2, true)
	for _, path := range []string{"/v1/titles/ep1/stats", "/v1/paths/top"} {
		rec := get(c.nodes[0].router, path)
		require.Equal(t, http.StatusServiceUnavailable, rec.Code, "no partial answers")
		require.Equal(t, "no_owner", errorCode(t, rec))
		require.Equal(t, "1", rec.Header().Get("Retry-After"))
	}
}

func TestRouterPassesOtherRoutes(t *testing.T) {
	c := newRoutedCluster(t, 1, serve.DefaultRouterConfig())
	require.Equal(t, http.StatusNotFound, get(c.nodes[0].router, "/v1/nothing").Code)
}

// An owned partition whose lease is no longer valid (the node woke from a
// pause past the ttl; its lease manager has not noticed yet) is answered
// neither locally nor to routed queries.
func TestInvalidOwnershipIsNotAnswered(t *testing.T) {
	c := newRoutedCluster(t, 2, serve.DefaultRouterConfig())
	var valid atomic.Bool
	valid.Store(true)
	c.nodes[0].resp.SetValidity(func(p int, epoch uint64) bool { return p == 1 && epoch == 10 && valid.Load() })
	user := userIn(1, "u")
	putSessions(t, c.nodes[0].st, user, 1)
	c.own(0, 1, 10)
	for _, nd := range c.nodes {
		rec := get(nd.router, "/v1/users/"+user+"/sessions")
		require.Equal(t, http.StatusOK, rec.Code, "%s: %s", nd.name, rec.Body)
		require.Equal(t, "10", rec.Header().Get(serve.HeaderEpoch))
	}

	valid.Store(false)
	for _, nd := range c.nodes {
		rec := get(nd.router, "/v1/users/"+user+"/sessions")
		require.Equal(t, http.StatusServiceUnavailable, rec.Code, "%s answered under an invalid lease: %s", nd.name, rec.Body)
	}
	_, owned := c.nodes[0].resp.Owned(1)
	require.False(t, owned)
}
