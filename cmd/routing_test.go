package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/cluster"
	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/serve"
	"github.com/clickpipe/clickpipe/state"
	"github.com/clickpipe/clickpipe/state/statetest"
)

// routingNode is one node of TestQueryRoutingOverPartitionLeases.
type routingNode struct {
	name    string
	st      *state.Store
	routing *queryRouting
	leases  *cluster.Manager
	stop    context.CancelFunc
	done    chan struct{}
}

// TestQueryRoutingOverPartitionLeases: three clustered buffers, real
// partition leases (a minimal stand-in for the ownership hooks: the lease
// work calls Acquired and Released), the epochs learnt from the lease
// watch. Every node answers every user with the owner's answer and epoch;
// a graceful handover moves the answers to the new owner at a higher
// epoch.
func TestQueryRoutingOverPartitionLeases(t *testing.T) {
	const parts = 4
	cfg := buffertest.Config()
	cfg.Partitions = parts
	c := buffertest.NewCluster(t, 3, cfg)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []*routingNode
	for i, b := range c.Nodes {
		nd := &routingNode{name: c.Cfgs[i].Cluster.NodeName, st: statetest.New(t, statetest.Options(), ""),
			done: make(chan struct{})}
		live, err := state.LoadLive(nd.st, parts)
		require.NoError(t, err)
		api, err := serve.NewAPI(nd.st, live, serve.DefaultConfig(), quiet, nil)
		require.NoError(t, err)
		nd.routing, err = newQueryRouting(b, api, nd.name, serve.DefaultRouterConfig(), quiet, prometheus.NewRegistry())
		require.NoError(t, err)
		nd.leases, err = cluster.New(cluster.Config{NodeName: nd.name, TTL: 2 * time.Second, Replicas: 3},
			b.JetStream(), quiet, prometheus.NewRegistry())
		require.NoError(t, err)
		for p := range parts {
			nd.leases.Register(partitionLeasePrefix+strconv.Itoa(p), func(ctx context.Context, h *cluster.Holding) error {
				if err := nd.routing.Responder.Acquired(ctx, p, h.Epoch); err != nil {
					return err
				}
				<-ctx.Done()
				nd.routing.Responder.Released(context.WithoutCancel(ctx), p, true)
				return nil
			})
		}
		require.NoError(t, nd.leases.Open(context.Background()))
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		ctx, cancel := context.WithCancel(context.Background())
		nd.stop = cancel
		epochsDone := make(chan struct{})
		go func() { defer close(epochsDone); _ = nd.routing.Epochs.Run(ctx) }()
		go func() { defer close(nd.done); _ = nd.leases.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-nd.done
			<-epochsDone
			_ = nd.routing.Responder.Close()
		})
	}

	holders := waitForHolders(t, nodes, parts)
	for p := range parts {
		user := userOf(p, parts)
		owner := holders[p]
		writeSession(t, nodes[owner.index].st, p, user)
		for _, nd := range nodes {
			rec := httptest.NewRecorder()
			nd.routing.Router.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/users/"+user+"/sessions", nil))
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.Equal(t, owner.name, rec.Header().Get(serve.HeaderNode), "partition %d asked on %s", p, nd.name)
			require.Equal(t, strconv.FormatUint(owner.epoch, 10), rec.Header().Get(serve.HeaderEpoch))
			var v struct{ Sessions []any }
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v))
			require.Len(t, v.Sessions, 1, "the owner's state")
		}
	}
	rec := httptest.NewRecorder()
	nodes[0].routing.Router.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/paths/top", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	// Graceful handover: partition 0's holder leaves.
	first := holders[0]
	nodes[first.index].stop()
	<-nodes[first.index].done
	rest := append(append([]*routingNode{}, nodes[:first.index]...), nodes[first.index+1:]...)
	user := userOf(0, parts)
	require.Eventually(t, func() bool {
		rec := httptest.NewRecorder()
		rest[0].routing.Router.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/users/"+user+"/profile", nil))
		epoch, _ := strconv.ParseUint(rec.Header().Get(serve.HeaderEpoch), 10, 64)
		return rec.Code == http.StatusOK && rec.Header().Get(serve.HeaderNode) != first.name && epoch > first.epoch
	}, 20*time.Second, 50*time.Millisecond, "the new owner answers at a higher epoch")
}

type holder struct {
	name  string
	index int
	epoch uint64
}

// waitForHolders waits until every partition lease has a holder whose
// responder answers at the lease's epoch and every node's watch knows that
// epoch.
func waitForHolders(t *testing.T, nodes []*routingNode, parts int) map[int]holder {
	t.Helper()
	out := map[int]holder{}
	assert.Eventually(t, func() bool {
		st, err := nodes[0].leases.Status(context.Background())
		if err != nil {
			return false
		}
		for _, l := range st.Leases {
			p, _ := strconv.Atoi(l.Name[len(partitionLeasePrefix):])
			for i, nd := range nodes {
				if nd.name == l.Holder {
					out[p] = holder{name: l.Holder, index: i, epoch: l.Epoch}
				}
			}
		}
		for p := range parts {
			h, ok := out[p]
			if !ok {
				return false
			}
			if e, owned := nodes[h.index].routing.Responder.Owned(p); !owned || e != h.epoch {
				return false
			}
			for _, nd := range nodes {
				if nd.routing.Epochs.Ready() != nil || nd.routing.Epochs.Epoch(p) != h.epoch {
					return false
				}
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "every partition held and known")
	if t.Failed() {
		st, err := nodes[0].leases.Status(context.Background())
		t.Logf("leases %+v (%v)", st.Leases, err)
		for p := range parts {
			for _, nd := range nodes {
				e, ok := nd.routing.Responder.Owned(p)
				t.Logf("partition %d on %s: owned %v at %d, watch epoch %d", p, nd.name, ok, e, nd.routing.Epochs.Epoch(p))
			}
		}
		t.FailNow()
	}
	return out
}

func writeSession(t *testing.T, st *state.Store, p int, user string) {
	t.Helper()
	start := time.Date(2026, 5, 1, 18, 0, 0, 0, time.UTC)
	require.NoError(t, st.Update(func(txn *badger.Txn) error {
		return txn.Set(state.SessionKey(p, user, start.UnixMilli()), state.EncodeSession(&event.Session{
			SessionID: "s-" + user, UserKey: user, Start: start, End: start, ClicksToPlay: -1, TimeToPlayMs: -1, ClosedBy: "gap"}))
	}))
}

// userOf is a user id of partition p.
func userOf(p, parts int) string {
	for i := 0; ; i++ {
		if u := fmt.Sprintf("user-%d", i); event.Partition(u, parts) == p {
			return u
		}
	}
}
