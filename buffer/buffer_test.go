package buffer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, buffertest.LeakOptions()...) }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// T13: the settings the delivery promises depend on.
func TestInvariants(t *testing.T) {
	for _, mode := range []string{buffer.DurabilityFsync, buffer.DurabilityRelaxed} {
		t.Run(mode, func(t *testing.T) {
			cfg := buffertest.Config()
			cfg.Durability = mode
			cfg.Partitions = 7
			cfg.Retention = 48 * time.Hour
			b := buffertest.New(t, cfg, "")
			opts := b.Server().JetStreamConfig()
			require.NotNil(t, opts)
			sopts := b.ServerOptions()
			require.True(t, sopts.NoSigs)
			require.True(t, sopts.DontListen)
			require.Equal(t, mode == buffer.DurabilityFsync, sopts.SyncAlways)

			ctx := context.Background()
			s, err := b.JetStream().Stream(ctx, buffer.EventsStream)
			require.NoError(t, err)
			info, err := s.Info(ctx)
			require.NoError(t, err)
			require.Equal(t, jetstream.DiscardNew, info.Config.Discard)
			require.Equal(t, jetstream.LimitsPolicy, info.Config.Retention)
			require.Equal(t, jetstream.FileStorage, info.Config.Storage)
			require.Equal(t, 48*time.Hour, info.Config.MaxAge)
			require.Equal(t, cfg.MaxBytes, info.Config.MaxBytes)
			require.Equal(t, jetstream.DefaultPersistMode, info.Config.PersistMode)
			require.True(t, info.Config.AllowDirect, "direct reads while a consumer is created")
			require.Len(t, info.Config.Subjects, 7)
			for p := range 7 {
				require.Contains(t, info.Config.Subjects, fmt.Sprintf("clickpipe.events.%d", p))
			}
		})
	}
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := buffertest.Config()
	ctx := context.Background()
	const n = 50
	func() {
		b, err := buffer.New(cfg, dir, discard(), nil)
		require.NoError(t, err)
		require.NoError(t, b.Open(ctx))
		defer b.Close()
		for i := range n {
			_, err := b.Publish(ctx, i%cfg.Partitions, []byte(fmt.Sprintf("msg-%d", i)), nil)
			require.NoError(t, err)
		}
	}()
	b := buffertest.New(t, cfg, dir)
	st, err := b.State(ctx, buffer.EventsStream)
	require.NoError(t, err)
	require.EqualValues(t, n, st.Messages)
	c, err := b.Consumer(ctx, buffer.ConsumerSpec{Stream: buffer.EventsStream, Name: "reader"})
	require.NoError(t, err)
	var got []string
	for len(got) < n {
		msgs, err := c.Fetch(ctx, 100, time.Second)
		require.NoError(t, err)
		for _, m := range msgs {
			got = append(got, string(m.Data))
			require.NoError(t, m.Ack(ctx))
		}
	}
	for i := range n {
		require.Equal(t, fmt.Sprintf("msg-%d", i), got[i])
	}
}

func TestStreamFullIsErrStreamFull(t *testing.T) {
	cfg := buffertest.Config()
	cfg.MaxBytes = 1 << 20
	b := buffertest.New(t, cfg, "")
	ctx := context.Background()
	body := make([]byte, 100<<10)
	var err error
	for range 20 {
		if _, err = b.Publish(ctx, 0, body, nil); err != nil {
			break
		}
	}
	require.True(t, errors.Is(err, buffer.ErrStreamFull), "got %v", err)
	st, err := b.State(ctx, buffer.EventsStream)
	require.NoError(t, err)
	require.LessOrEqual(t, st.Bytes, uint64(cfg.MaxBytes))
	require.Positive(t, st.Messages, "DiscardNew keeps what was stored")
}

func TestIncompatibleExistingStreamRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := buffertest.Config()
	ctx := context.Background()
	b, err := buffer.New(cfg, dir, discard(), nil)
	require.NoError(t, err)
	require.NoError(t, b.Open(ctx))
	require.NoError(t, b.Close())

	cfg.Partitions = 8
	b, err = buffer.New(cfg, dir, discard(), nil)
	require.NoError(t, err)
	err = b.Open(ctx)
	require.ErrorIs(t, err, buffer.ErrIncompatible)
	require.ErrorContains(t, err, "buffer.partitions")
	require.NoError(t, b.Close())

	cfg.Partitions = 4
	cfg.Retention = time.Hour // a limit change is applied, not refused
	b = buffertest.New(t, cfg, dir)
	s, err := b.JetStream().Stream(ctx, buffer.EventsStream)
	require.NoError(t, err)
	require.Equal(t, time.Hour, s.CachedInfo().Config.MaxAge)
}

func TestConsumerResumesAndIsIdempotent(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	ctx := context.Background()
	for i := range 10 {
		_, err := b.Publish(ctx, 1, []byte{byte(i)}, nil)
		require.NoError(t, err)
	}
	spec := buffer.ConsumerSpec{Stream: buffer.EventsStream, Name: "p1", FilterSubject: buffer.Subject(1), StartSeq: 6}
	c, err := b.Consumer(ctx, spec)
	require.NoError(t, err)
	msgs, err := c.Fetch(ctx, 100, 200*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, msgs, 5)
	require.EqualValues(t, 6, msgs[0].Seq)
	_, err = b.Consumer(ctx, spec)
	require.NoError(t, err)
	spec.FilterSubject = buffer.Subject(2)
	_, err = b.Consumer(ctx, spec)
	require.ErrorIs(t, err, buffer.ErrIncompatible)
}

// ConsumerFrom restarts a consumer at a checkpoint even when the durable
// consumer has delivered past it without acks.
func TestConsumerFromRestartsAtCheckpoint(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	ctx := context.Background()
	for i := range 10 {
		_, err := b.Publish(ctx, 0, []byte{byte(i)}, nil)
		require.NoError(t, err)
	}
	spec := buffer.ConsumerSpec{Stream: buffer.EventsStream, Name: "p0", FilterSubject: buffer.Subject(0), StartSeq: 1}
	c, err := b.Consumer(ctx, spec)
	require.NoError(t, err)
	msgs, err := c.Fetch(ctx, 5, 200*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, msgs, 5) // delivered, never acked

	spec.StartSeq = 3
	c, err = b.ConsumerFrom(ctx, spec)
	require.NoError(t, err)
	msgs, err = c.Fetch(ctx, 100, 200*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, msgs, 8)
	require.EqualValues(t, 3, msgs[0].Seq, "starts at the checkpoint, not after what was delivered")
}
