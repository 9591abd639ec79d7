package process_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/state/statetest"
)

// BenchmarkApply is the sessionizer's apply throughput on one core: one
// partition, batches of fetch_batch (64) group-commit messages of 1-32
// events (the workload of the oracle test: browse, search, previews,
// playback with 10 s heartbeats, pauses, rebuffers, seeks, completions,
// out-of-order, too-late and duplicate events), decoded, applied and
// committed to a real Badger on disk with SyncWrites (one fsync per
// batch). One op is one batch.
func BenchmarkApply(b *testing.B) {
	const batch, users = 64, 400
	st := statetest.New(b, statetest.Options(), "")
	cfg := process.DefaultConfig()
	cfg.IdleTimeout = time.Hour
	proc, err := process.New(cfg, process.Deps{Store: st, Consumers: noConsumers{}, Sessions: noSessions{},
		Partitions: 1}, quiet, prometheus.NewRegistry())
	require.NoError(b, err)
	apply := process.NewBatcher(proc)
	var (
		pending      []*event.Message
		seq          uint64
		round        int
		events, size int64
	)
	t0 := time.Date(2026, 1, 10, 18, 0, 0, 0, time.UTC)
	refill := func() {
		// a fresh population of viewers, a day later each round
		w := newPrefixedWorkload(uint64(round+1), users, t0.Add(time.Duration(round)*24*time.Hour), fmt.Sprintf("r%d-", round))
		w.perMessage = 32
		round++
		for _, m := range w.messages(1) {
			seq++
			pending = append(pending, &event.Message{Seq: seq, Data: m.body})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(pending) < batch {
			b.StopTimer()
			refill()
			b.StartTimer()
		}
		msgs := pending[:batch]
		pending = pending[batch:]
		for _, m := range msgs {
			size += int64(len(m.Data))
			events += int64(countLines(m.Data))
		}
		if err := apply.Apply(0, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(size / int64(b.N))
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
}

func countLines(body []byte) int {
	n := 0
	_ = event.Lines(body, func(int, []byte) error { n++; return nil })
	return n
}

// The benchmark drives batches itself: no buffer behind the processor.
type noConsumers struct{}

func (noConsumers) PartitionConsumer(context.Context, int, uint64) (process.Fetcher, error) {
	return nil, fmt.Errorf("benchmark: no buffer")
}
func (noConsumers) LastSeq(context.Context) (uint64, error) { return 0, nil }

type noSessions struct{}

func (noSessions) PublishSession(context.Context, []byte, string) (uint64, error) { return 0, nil }
