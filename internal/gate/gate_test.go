package gate

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGateCachesCombinedVerdict(t *testing.T) {
	var disk, stream error
	g := New(time.Hour, nil,
		Condition{Name: "disk", Check: func(context.Context) error { return disk }},
		Condition{Name: "stream", Check: func(context.Context) error { return stream }})
	ctx := context.Background()
	require.NoError(t, g.Refresh(ctx))
	require.NoError(t, g.Admit())

	disk = errors.New("disk low")
	require.NoError(t, g.Admit(), "the verdict is cached until the next refresh")
	require.Error(t, g.Refresh(ctx))
	require.ErrorContains(t, g.Admit(), "disk low")

	stream = errors.New("stream full")
	_ = g.Refresh(ctx)
	require.ErrorContains(t, g.Admit(), "disk low")
	require.ErrorContains(t, g.Admit(), "stream full")

	disk, stream = nil, nil
	_ = g.Refresh(ctx)
	require.NoError(t, g.Admit(), "intake resumes when the conditions clear")
}

func TestRunStopsWithContext(t *testing.T) {
	g := New(time.Millisecond, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run ignored its context")
	}
}

func TestGateLogsTransitionsAndKeepsAdvisoryApart(t *testing.T) {
	var disk, failed error
	var logs bytes.Buffer
	g := New(time.Hour, slog.New(slog.NewTextHandler(&logs, nil)),
		Condition{Name: "disk", Check: func(context.Context) error { return disk }},
		Condition{Name: "failed_stream", Advisory: true, Check: func(context.Context) error { return failed }})
	ctx := context.Background()
	require.NoError(t, g.Refresh(ctx))
	require.Empty(t, logs.String())

	failed = errors.New("FAILED stream full")
	require.NoError(t, g.Refresh(ctx), "an advisory condition does not close intake")
	require.ErrorContains(t, g.Warnings(), "FAILED stream full")
	require.Contains(t, logs.String(), "intake gate warning")

	disk = errors.New("disk low")
	require.Error(t, g.Refresh(ctx))
	require.Contains(t, logs.String(), "intake gate closed")
	require.Contains(t, logs.String(), "disk low")
	_ = g.Refresh(ctx)
	require.Equal(t, 1, strings.Count(logs.String(), "intake gate closed"), "logged once per transition")

	disk, failed = nil, nil
	require.NoError(t, g.Refresh(ctx))
	require.Contains(t, logs.String(), "intake gate reopened")
	require.Contains(t, logs.String(), "intake gate warning cleared")
	require.NoError(t, g.Warnings())
}
