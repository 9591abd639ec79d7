package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer/buffertest"
	"github.com/clickpipe/clickpipe/cluster"
)

// BenchmarkHoldingFence compares the two fences a partition owner can put
// before a commit: Check (a compare-and-swap of the lease in the R3 KV
// bucket, one Raft round trip with fsync) and Valid (local: held and
// renewed within two thirds of the ttl).
func BenchmarkHoldingFence(b *testing.B) {
	c := buffertest.NewCluster(b, 3, buffertest.Config())
	holdings := make(chan *cluster.Holding, 1)
	var ms []*cluster.Manager
	for i, buf := range c.Nodes {
		m, err := cluster.New(cluster.Config{NodeName: c.Cfgs[i].Cluster.NodeName, TTL: 15 * time.Second, Replicas: 3},
			buf.JetStream(), testLog(c.Cfgs[i].Cluster.NodeName), prometheus.NewRegistry())
		require.NoError(b, err)
		m.Register("bench", func(ctx context.Context, h *cluster.Holding) error {
			holdings <- h
			<-ctx.Done()
			return nil
		})
		require.NoError(b, m.Open(context.Background()))
		ms = append(ms, m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(ms))
	for _, m := range ms {
		go func() { _ = m.Run(ctx); done <- struct{}{} }()
	}
	defer func() {
		cancel()
		for range ms {
			<-done
		}
	}()
	h := <-holdings
	b.Run("Check", func(b *testing.B) {
		for b.Loop() {
			if err := h.Check(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Valid", func(b *testing.B) {
		for b.Loop() {
			if !h.Valid() {
				b.Fatal("not valid")
			}
		}
	})
}
