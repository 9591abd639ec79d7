package gate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestGateCachesCombinedVerdict(t *testing.T) {
	var disk, stream error
	g := New(time.Hour,
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
	g := New(time.Millisecond)
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
