package buffer_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
)

// Three clustered buffers: every stream is R3, fsync holds, a publish on
// any node is acknowledged once replicated, and the acknowledged messages
// survive the loss of the stream leader.
func TestClusterReplicatedStreams(t *testing.T) {
	c := buffertest.NewCluster(t, 3, buffertest.Config())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, b := range c.Nodes {
		require.NoError(t, b.Healthy(), "node %d", i)
		require.True(t, b.ServerOptions().SyncAlways)
		require.Equal(t, 3, b.Replicas())
	}
	for _, name := range []string{buffer.EventsStream, buffer.FailedStream, buffer.SessionsStream} {
		s, err := c.Nodes[0].JetStream().Stream(ctx, name)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		require.Equal(t, 3, info.Config.Replicas, name)
		require.NotNil(t, info.Cluster, name)
		require.Len(t, info.Cluster.Replicas, 2, "%s has a leader and two followers", name)
	}
	// A bucket an earlier build created R1: the next start of any node
	// raises it to the streams' replication.
	kvs, err := c.Nodes[0].JetStream().Stream(ctx, "KV_"+buffer.RegulatedUsersBucket)
	require.NoError(t, err)
	var lastErr error
	require.Eventually(t, func() bool { // the bucket's group may still be electing
		uctx, ucancel := context.WithTimeout(ctx, 3*time.Second)
		defer ucancel()
		info, err := kvs.Info(uctx)
		if err == nil {
			r1 := info.Config
			r1.Replicas = 1
			_, err = c.Nodes[0].JetStream().UpdateStream(uctx, r1)
		}
		lastErr = err
		return err == nil
	}, 30*time.Second, 200*time.Millisecond, "making the bucket R1: %v", lastErr)

	var acked int
	for i, b := range c.Nodes {
		for range 10 {
			_, err := b.Publish(ctx, i%4, []byte("x"), nil)
			require.NoError(t, err)
			acked++
		}
	}
	// Kill the EVENTS leader; the survivors keep every acknowledged message
	// and accept new ones after the election.
	leader := streamLeader(t, c, buffer.EventsStream)
	c.Stop(leader)
	other := c.Nodes[(leader+1)%3]
	require.Eventually(t, func() bool {
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		defer pcancel()
		_, err := other.Publish(pctx, 0, []byte("after"), nil)
		return err == nil
	}, 30*time.Second, 100*time.Millisecond)
	acked++
	st, err := other.State(ctx, buffer.EventsStream)
	require.NoError(t, err)
	require.GreaterOrEqual(t, st.Messages, uint64(acked))
	c.Start(leader)
	require.Eventually(t, func() bool {
		st, err := c.Nodes[leader].State(ctx, buffer.EventsStream)
		return err == nil && st.Messages >= uint64(acked)
	}, 30*time.Second, 100*time.Millisecond, "the restarted node catches up")
	require.Eventually(t, func() bool {
		s, err := other.JetStream().Stream(ctx, "KV_"+buffer.RegulatedUsersBucket)
		return err == nil && s.CachedInfo().Config.Replicas == 3
	}, 30*time.Second, 200*time.Millisecond, "the restarted node raised the R1 bucket to R3")
}

func streamLeader(t *testing.T, c *buffertest.Cluster, stream string) int {
	t.Helper()
	s, err := c.Nodes[0].JetStream().Stream(context.Background(), stream)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	for i, cfg := range c.Cfgs {
		if cfg.Cluster.NodeName == info.Cluster.Leader {
			return i
		}
	}
	t.Fatalf("no node is leader %q", info.Cluster.Leader)
	return -1
}

func TestRelaxedRefusedWhenClustered(t *testing.T) {
	cfg := buffertest.Config()
	cfg.Durability = buffer.DurabilityRelaxed
	cfg.Cluster.Enabled = true
	cfg.Cluster.NodeName = "a"
	cfg.Cluster.Listen = "127.0.0.1:6222"
	cfg.Cluster.Routes = []string{"nats-route://127.0.0.1:6223"}
	_, err := buffer.New(cfg, t.TempDir(), discard(), nil)
	require.ErrorContains(t, err, "buffer.durability")
}

// StepDown hands the node's stream and consumer leaderships to its peers
// (a graceful leave): EVENTS led by the node is led by another one right
// after, without an election timeout, and so is a consumer it led.
func TestStepDownHandsLeadershipsOver(t *testing.T) {
	c := buffertest.NewCluster(t, 3, buffertest.Config())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader := streamLeader(t, c, buffer.EventsStream)
	b := c.Nodes[leader]
	_, err := b.ConsumerFrom(ctx, buffer.ConsumerSpec{Stream: buffer.EventsStream, Name: "stepdown-probe"})
	require.NoError(t, err)
	srv := b.Server()
	acc := srv.GlobalAccount().Name
	s, err := b.JetStream().Stream(ctx, buffer.EventsStream)
	require.NoError(t, err)
	var led []string
	for cons := range s.ConsumerNames(ctx).Name() {
		if srv.JetStreamIsConsumerLeader(acc, buffer.EventsStream, cons) {
			led = append(led, cons)
		}
	}

	began := time.Now()
	moved, err := b.StepDown(ctx)
	require.NoError(t, err)
	t.Logf("handed %d groups over in %s (this node led EVENTS and %d of its consumers)", moved, time.Since(began), len(led))
	require.GreaterOrEqual(t, moved, 1+len(led))
	require.NotEqual(t, leader, streamLeader(t, c, buffer.EventsStream), "EVENTS led by another node")
	for _, cons := range led {
		require.False(t, srv.JetStreamIsConsumerLeader(acc, buffer.EventsStream, cons), cons)
	}
	_, err = c.Nodes[(leader+1)%3].State(ctx, buffer.EventsStream)
	require.NoError(t, err, "the stream answers through another node")
}

// Stream DUPS (the duplicate lists of a cluster with partition ownership)
// has a byte limit, and the embedded server's store budget counts it: a
// stream without one would fill the budget of every stream (once the
// server's store passes its limit every write fails, lease renewals
// included). A DUPS created before the limit existed gets it.
func TestDupsStreamIsBoundedAndBudgeted(t *testing.T) {
	c := buffertest.NewCluster(t, 3, buffertest.Config())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, cfg := c.Nodes[0], c.Cfgs[0]
	js := b.JetStream()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{ // as earlier versions made it
		Name: buffer.DupsStream, Subjects: []string{"clickpipe.dups.>"}, Retention: jetstream.LimitsPolicy,
		Storage: jetstream.FileStorage, Replicas: 3, MaxAge: cfg.Retention, Duplicates: 2 * time.Minute,
		Discard: jetstream.DiscardOld,
	})
	require.NoError(t, err)
	require.NoError(t, b.EnsureDups(ctx))
	s, err := js.Stream(ctx, buffer.DupsStream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, cfg.DupsMaxBytes(), info.Config.MaxBytes)
	require.Equal(t, jetstream.DiscardOld, info.Config.Discard, "a full DUPS drops its oldest records")
	require.Equal(t, 3, info.Config.Replicas)
	require.NoError(t, c.Nodes[1].EnsureDups(ctx), "a peer finds it as configured")

	single := cfg
	single.Cluster = buffer.DefaultClusterConfig()
	alone, err := buffer.New(single, t.TempDir(), discard(), nil)
	require.NoError(t, err)
	require.Equal(t, cfg.DupsMaxBytes(), b.ServerOptions().JetStreamMaxStore-alone.ServerOptions().JetStreamMaxStore,
		"the store budget of a clustered node includes DUPS")
}

// DUPS's budget: 10 MiB per partition and day of retention, at least 64 MiB.
func TestDupsMaxBytes(t *testing.T) {
	for _, tc := range []struct {
		partitions int
		retention  time.Duration
		want       int64
	}{
		{32, 7 * 24 * time.Hour, 32 * 7 * 10 << 20},
		{32, 7*24*time.Hour + time.Minute, 32 * 8 * 10 << 20},
		{1, time.Hour, 64 << 20},
		{1024, 30 * 24 * time.Hour, 1024 * 30 * 10 << 20},
	} {
		cfg := buffer.Config{Partitions: tc.partitions, Retention: tc.retention}
		require.Equal(t, tc.want, cfg.DupsMaxBytes(), "%d partitions, %s", tc.partitions, tc.retention)
	}
}
