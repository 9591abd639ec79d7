package buffer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
)

// ReadFrom reads one partition's messages in stream order from a given
// sequence, with their data, headers and store times, and says how many
// more there are; HoldsFrom tells whether the stream reaches a sequence.
func TestReadFromReadsAPartitionWithoutAConsumer(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := time.Now()
	var seqs []uint64 // partition 1's
	var last uint64
	for i := range 20 {
		seq, err := b.Publish(ctx, i%4, fmt.Appendf(nil, "m%d", i), map[string]string{"X-Kind": fmt.Sprint(i)})
		require.NoError(t, err)
		if i%4 == 1 {
			seqs = append(seqs, seq)
		}
		last = seq
	}

	msgs, pending, err := b.ReadFrom(ctx, buffer.EventsStream, buffer.Subject(1), 1, 3)
	require.NoError(t, err)
	require.Len(t, msgs, 3)
	require.Equal(t, uint64(2), pending, "five messages on partition 1, three read")
	for i, m := range msgs {
		n := 4*i + 1
		require.Equal(t, seqs[i], m.Seq)
		require.Equal(t, 1, m.Partition)
		require.Equal(t, buffer.Subject(1), m.Subject)
		require.Equal(t, fmt.Sprintf("m%d", n), string(m.Data))
		require.Equal(t, []string{fmt.Sprint(n)}, m.Header["X-Kind"])
		for k := range m.Header {
			require.NotContains(t, []string{"Nats-Stream", "Nats-Sequence", "Nats-Subject", "Nats-Time-Stamp", "Nats-Num-Pending", "Nats-Last-Sequence"}, k)
		}
		require.WithinDuration(t, before, m.Published, 10*time.Second)
		require.Zero(t, m.Delivery, "a read, not a delivery")
		require.NoError(t, m.Ack(ctx), "nothing to settle")
	}

	rest, pending, err := b.ReadFrom(ctx, buffer.EventsStream, buffer.Subject(1), msgs[2].Seq+1, 100)
	require.NoError(t, err)
	require.Len(t, rest, 2)
	require.Equal(t, seqs[3:], []uint64{rest[0].Seq, rest[1].Seq})
	require.Zero(t, pending)

	none, pending, err := b.ReadFrom(ctx, buffer.EventsStream, buffer.Subject(1), last+1, 100)
	require.NoError(t, err, "past the end: nothing yet, not an error")
	require.Empty(t, none)
	require.Zero(t, pending)

	// The leader's answer (GetMessage, Read) carries the same message.
	got, err := b.GetMessage(ctx, buffer.EventsStream, seqs[1])
	require.NoError(t, err)
	require.Equal(t, msgs[1].Data, got.Data)
	require.Equal(t, msgs[1].Subject, got.Subject)
	require.Equal(t, []string{"5"}, got.Header["X-Kind"])
	require.Equal(t, msgs[1].Published.UnixNano(), got.Time.UnixNano())
	_, err = b.GetMessage(ctx, buffer.EventsStream, last+1)
	require.ErrorIs(t, err, jetstream.ErrMsgNotFound)
	_, err = b.Read(ctx, buffer.EventsStream, last+1)
	require.ErrorIs(t, err, buffer.ErrGone)

	held, err := b.HoldsFrom(ctx, buffer.EventsStream, last)
	require.NoError(t, err)
	require.True(t, held)
	held, err = b.HoldsFrom(ctx, buffer.EventsStream, last+1)
	require.NoError(t, err)
	require.False(t, held, "the stream ends at %d", last)
}

// An EVENTS stream created before direct reads existed gets them at the
// next start.
func TestDirectReadsTurnedOnForAnOlderStream(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := buffer.New(buffertest.Config(), dir, discard(), nil)
	require.NoError(t, err)
	require.NoError(t, b.Open(ctx))
	s, err := b.JetStream().Stream(ctx, buffer.EventsStream)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	require.True(t, cfg.AllowDirect)
	cfg.AllowDirect = false
	_, err = b.JetStream().UpdateStream(ctx, cfg)
	require.NoError(t, err)
	_, err = b.Publish(ctx, 0, []byte("x"), nil)
	require.NoError(t, err)
	_, _, err = b.ReadFrom(ctx, buffer.EventsStream, buffer.Subject(0), 1, 1)
	require.ErrorIs(t, err, buffer.ErrNoDirectReplica, "without allow_direct no one answers")
	require.NoError(t, b.Close())

	b = buffertest.New(t, buffertest.Config(), dir)
	msgs, _, err := b.ReadFrom(ctx, buffer.EventsStream, buffer.Subject(0), 1, 1)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
}

// The point of direct reads: with the JetStream meta leader gone, a
// surviving node reads a partition at once, from its own replica, while
// anything that needs the meta group (creating a consumer) waits for the
// election.
func TestReadFromWhileTheMetaLeaderIsGone(t *testing.T) {
	c := buffertest.NewCluster(t, 3, buffertest.Config())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var published []uint64
	for i := range 30 {
		seq, err := c.Nodes[i%3].Publish(ctx, 0, fmt.Appendf(nil, "m%d", i), nil)
		require.NoError(t, err)
		published = append(published, seq)
	}
	leader := -1
	for i, b := range c.Nodes {
		if b.Server().JetStreamIsLeader() {
			leader = i
		}
	}
	require.NotEqual(t, -1, leader, "a meta leader")
	survivor := c.Nodes[(leader+1)%3]
	// Every message acknowledged is readable (from whichever replica
	// answers).
	require.Eventually(t, func() bool {
		msgs, _, err := survivor.ReadFrom(ctx, buffer.EventsStream, buffer.Subject(0), 1, 100)
		return err == nil && len(msgs) == len(published)
	}, 10*time.Second, 50*time.Millisecond)

	// A follower joins the direct-get queue group at a tick of nats-server
	// (every 2 s) once its replica is in sync; the stream is seconds old.
	time.Sleep(6 * time.Second)
	c.Stop(leader)
	stopped := time.Now()
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	msgs, pending, err := survivor.ReadFrom(rctx, buffer.EventsStream, buffer.Subject(0), published[10], 100)
	rcancel()
	require.NoError(t, err)
	require.Zero(t, pending)
	require.Len(t, msgs, 20)
	for i, m := range msgs {
		require.Equal(t, published[10+i], m.Seq)
		require.Equal(t, fmt.Sprintf("m%d", 10+i), string(m.Data))
	}
	read := time.Since(stopped)
	cctx, ccancel := context.WithTimeout(ctx, time.Second)
	_, cerr := survivor.JetStream().CreateConsumer(cctx, buffer.EventsStream,
		jetstream.ConsumerConfig{Durable: "probe", FilterSubject: buffer.Subject(0), AckPolicy: jetstream.AckExplicitPolicy})
	ccancel()
	t.Logf("read 20 messages %s after the meta leader stopped; a consumer creation then: %v", read, cerr)
}
