package archive_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/event"
)

// switchLease is a hand-written lease the test hands from one archiver to
// another; fail makes the holder's check fail (a lease lost between two
// renewals) without ending its context.
type switchLease struct {
	mu      sync.Mutex
	holder  string
	fail    bool
	changed chan struct{}
	cancels []context.CancelFunc
}

func newSwitchLease() *switchLease { return &switchLease{changed: make(chan struct{})} }

func (s *switchLease) set(holder string, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cancels {
		c()
	}
	s.cancels = nil
	s.holder, s.fail = holder, fail
	close(s.changed)
	s.changed = make(chan struct{})
}

// node is one node's view of the lease.
type leaseView struct {
	s    *switchLease
	name string
}

func (v leaseView) Hold(ctx context.Context, _ string) (context.Context, func(context.Context) error, error) {
	for {
		v.s.mu.Lock()
		if v.s.holder == v.name {
			held, cancel := context.WithCancel(ctx)
			v.s.cancels = append(v.s.cancels, cancel)
			v.s.mu.Unlock()
			return held, func(context.Context) error {
				v.s.mu.Lock()
				defer v.s.mu.Unlock()
				if v.s.holder != v.name || v.s.fail {
					return errors.New("lease lost")
				}
				return nil
			}, nil
		}
		ch := v.s.changed
		v.s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// Cluster mode: two archivers share a stream and a lake; only the lease
// holder writes, a failed lease check withholds the manifest, and after
// the lease moves the lake is still contiguous with every event once.
func TestLakeLeaseOneWriter(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	st, err := archive.OpenDir(t.TempDir())
	require.NoError(t, err)
	cfg := testConfig()
	lease := newSwitchLease()
	startNode := func(name string) (*archive.Archiver, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		a, err := archive.New(cfg, archive.Deps{Consumers: consumers{b, cfg}, Store: st,
			Lease: leaseView{lease, name}}, testLogger(t), reg)
		require.NoError(t, err)
		require.NoError(t, a.Open(t.Context()))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		t.Cleanup(func() {
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			require.NoError(t, a.Shutdown(sctx))
			cancel()
			require.NoError(t, <-done)
		})
		return a, reg
	}
	a, regA := startNode("a")
	bb, _ := startNode("b")
	var evs []event.Event
	for i := range 300 {
		evs = append(evs, makeEvent("web", i))
	}
	publishEvents(t, b, evs[:200], 20)

	time.Sleep(3 * cfg.FlushInterval) // nobody holds the lease: nothing may be written
	require.Zero(t, committedRows(t, st, archive.TableEvents))
	require.NoError(t, a.Healthy())
	require.NoError(t, bb.Healthy())

	// a holds the lease but cannot prove it: its manifests are withheld.
	lease.set("a", true)
	eventually(t, 10*time.Second, func() bool { return metric(t, regA, "clickpipe_archive_fenced_commits_total", archive.TableEvents) > 0 },
		"a fenced commit")
	require.Zero(t, committedRows(t, st, archive.TableEvents))

	lease.set("a", false)
	eventually(t, 20*time.Second, func() bool { return committedRows(t, st, archive.TableEvents) == 200 }, "a commits")
	lease.set("b", false)
	publishEvents(t, b, evs[200:], 20)
	eventually(t, 20*time.Second, func() bool { return committedRows(t, st, archive.TableEvents) == 300 }, "b commits the rest")

	rows, _ := readTable[archive.EventRow](t, st, archive.TableEvents)
	seen := map[string]int{}
	for _, r := range rows {
		seen[r.MessageID]++
	}
	for i := range 300 {
		require.Equal(t, 1, seen[fmt.Sprintf("msg-%06d", i)], "msg-%06d", i)
	}
	assertContiguous(t, st)
}
