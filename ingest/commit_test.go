package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/event"
)

// The answer waits for the publish ack: while the publisher holds the
// ack, no response arrives; once released, 200.
func TestNoSuccessBeforeAck(t *testing.T) {
	hold := make(chan struct{})
	pub := &capture{hold: hold, entered: make(chan struct{}, 1)}
	h := start(t, testConfig(), pub, nil)
	done := make(chan int, 1)
	go func() {
		resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(track("a"), track("b")), header: map[string]string{"Authorization": basic(keyWeb)}})
		done <- resp.StatusCode
	}()
	<-pub.entered
	select {
	case s := <-done:
		t.Fatalf("answered %d before the ack", s)
	case <-time.After(100 * time.Millisecond):
	}
	close(hold)
	require.Equal(t, 200, <-done)
	require.Len(t, pub.decoded(t), 2)
}

func TestPublishFailureIs503(t *testing.T) {
	cases := []struct {
		name string
		err  error
		hold bool
	}{
		{"publish error", errBoom, false},
		{"stream full", fmt.Errorf("%w: err_code 10077", buffer.ErrStreamFull), false},
		{"publish timeout", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pub := &capture{err: c.err}
			if c.hold {
				pub.hold = make(chan struct{}) // never released: PublishTimeout fires
			}
			cfg := testConfig()
			cfg.PublishTimeout = 100 * time.Millisecond
			h := start(t, cfg, pub, nil)
			resp, body := h.do(t, req{path: "/v1/batch", body: batchBody(track("a")), header: map[string]string{"Authorization": basic(keyWeb)}})
			require.Equal(t, 503, resp.StatusCode)
			require.Equal(t, "not_stored", requireJSONError(t, body).Code)
			require.Equal(t, "2", resp.Header.Get("Retry-After"))
			require.NotEmpty(t, resp.Header.Get("X-RateLimit-Reset"))
			require.Empty(t, pub.decoded(t))
		})
	}
}

func TestBufferErrorIs503(t *testing.T) {
	pub := &capture{err: errBoom}
	h := start(t, testConfig(), pub, nil)
	resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(track("a"), `{"type":"track"}`), header: map[string]string{"Authorization": basic(keyWeb)}})
	require.Equal(t, 503, resp.StatusCode)
}

// A failed stream that refuses the invalid items costs only them: the
// request is answered by its valid events.
func TestFailedStreamErrorDropsOnlyInvalidItems(t *testing.T) {
	pub := &capture{failedErr: errBoom}
	h := start(t, testConfig(), pub, nil)
	resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(track("a"), `{"type":"track"}`), header: map[string]string{"Authorization": basic(keyWeb)}})
	require.Equal(t, 200, resp.StatusCode)
	require.Len(t, pub.decoded(t), 1)
	require.Empty(t, pub.failedItems(t))
}

type gateFunc func() error

func (g gateFunc) Admit() error { return g() }

func TestGateRefusesWith503(t *testing.T) {
	var mu sync.Mutex
	var refuse error = errors.New("disk below watermark")
	g := gateFunc(func() error { mu.Lock(); defer mu.Unlock(); return refuse })
	pub := &capture{}
	h := start(t, testConfig(), pub, g)
	resp, body := h.do(t, req{path: "/v1/batch", body: batchBody(track("a")), header: map[string]string{"Authorization": basic(keyWeb)}})
	require.Equal(t, 503, resp.StatusCode)
	require.Equal(t, "unavailable", requireJSONError(t, body).Code)
	require.Equal(t, "2", resp.Header.Get("Retry-After"))
	reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64)
	require.NoError(t, err)
	require.Greater(t, reset, time.Now().UnixMilli())
	mu.Lock()
	refuse = nil
	mu.Unlock()
	resp, _ = h.do(t, req{path: "/v1/batch", body: batchBody(track("a")), header: map[string]string{"Authorization": basic(keyWeb)}})
	require.Equal(t, 200, resp.StatusCode)
	require.Len(t, pub.decoded(t), 1)
}

func TestRateLimitPerKey(t *testing.T) {
	cfg := testConfig()
	cfg.RateLimit, cfg.RateBurst = 1, 3
	pub := &capture{}
	h := start(t, cfg, pub, nil)
	post := func(key string, n int) *http.Response {
		items := make([]string, n)
		for i := range items {
			items[i] = track("u")
		}
		resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(items...), header: map[string]string{"Authorization": basic(key)}})
		return resp
	}
	require.Equal(t, 200, post(keyWeb, 3).StatusCode)
	resp := post(keyWeb, 2)
	require.Equal(t, 429, resp.StatusCode)
	after, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, after, 1)
	require.Equal(t, 200, post(keyServer, 3).StatusCode, "another key has its own bucket")
}

func TestLimiterRefill(t *testing.T) {
	l := newLimiter(10, 5)
	t0 := time.Unix(0, 0)
	ok, _ := l.take(0, 5, t0)
	require.True(t, ok)
	ok, wait := l.take(0, 1, t0)
	require.False(t, ok)
	require.Equal(t, 100*time.Millisecond, wait)
	ok, _ = l.take(0, 1, t0.Add(100*time.Millisecond))
	require.True(t, ok)
	ok, _ = l.take(0, 100, t0.Add(time.Hour))
	require.True(t, ok, "a request over the burst costs the burst")
}

// Concurrent requests share group-commit messages.
func TestGroupCommitCoalesces(t *testing.T) {
	cfg := testConfig()
	cfg.CommitLinger = 20 * time.Millisecond
	pub := &capture{}
	h := start(t, cfg, pub, nil)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(track(fmt.Sprint("u", i))), header: map[string]string{"Authorization": basic(keyWeb)}})
			require.Equal(t, 200, resp.StatusCode)
		})
	}
	wg.Wait()
	require.Len(t, pub.decoded(t), 40)
	pub.mu.Lock()
	defer pub.mu.Unlock()
	require.Less(t, pub.msgs, 20, "40 concurrent requests on 4 partitions should share messages")
}

func TestCommitterBoundsBytes(t *testing.T) {
	c := newCommitter(1, 1, 100, time.Hour, time.Now)
	var batches []*batch
	for range 10 {
		b, err := c.add(0, []byte(`{"padding":"0123456789012345678901234567890"}`), liveMeta{})
		require.NoError(t, err)
		batches = append(batches, b)
		select {
		case sealed := <-c.queues[0]:
			require.LessOrEqual(t, sealed.enc.Len(), 100)
			close(sealed.done)
		default:
		}
	}
	require.NotSame(t, batches[0], batches[9])
	go func() {
		for b := range c.queues[0] {
			close(b.done)
		}
	}()
	c.stop()
	_, err := c.add(0, []byte(`{}`), liveMeta{})
	require.ErrorIs(t, err, ErrStopped)
}

// Shutdown publishes batches that are still lingering and answers their
// requests with 200.
func TestShutdownFlushes(t *testing.T) {
	cfg := testConfig()
	cfg.CommitLinger = time.Second
	pub := &capture{}
	h := start(t, cfg, pub, nil)
	done := make(chan int, 1)
	go func() {
		resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(track("a")), header: map[string]string{"Authorization": basic(keyWeb)}})
		done <- resp.StatusCode
	}()
	eventually(t, 2*time.Second, func() bool {
		h.in.com.mu.Lock()
		defer h.in.com.mu.Unlock()
		for _, b := range h.in.com.open {
			if b != nil {
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, h.in.Shutdown(ctx))
	require.Less(t, time.Since(start), 900*time.Millisecond, "shutdown does not wait for the linger")
	require.Equal(t, 200, <-done)
	require.Len(t, pub.decoded(t), 1)
	resp, _ := h.do(t, req{path: "/v1/batch", body: batchBody(track("a")), header: map[string]string{"Authorization": basic(keyWeb)}})
	require.Equal(t, 503, resp.StatusCode)
}

var _ Publisher = (*buffer.Buffer)(nil)

// Round trip through a real embedded JetStream: stored messages decode to
// the normalised events, with codec headers, and invalid items land in
// the failed-events stream with their reason and bytes.
func TestRoundTripJetStream(t *testing.T) {
	h, buf := startBuffer(t, testConfig())
	body := []byte(`{"sentAt":"2026-11-25T19:33:30.711Z","context":{"library":{"name":"analytics-go"},"locale":"en"},"integrations":{"All":true},"batch":[
		{"type":"identify","userId":"user-1","traits":{"email":"u1@example.com"},"context":{"locale":"de"}},
		{"type":"track","userId":"user-2","event":"Play","properties":{"position_ms":1200}},
		{"type":"track","userId":"user-3"},
		{"type":"page","name":"Home"},
		{"type":"bogus","userId":"u"}]}`)
	resp, out := h.do(t, req{path: "/v1/batch", body: body, header: map[string]string{"Authorization": basic(keyServer), "User-Agent": "analytics-go (version: 3.0.0)"}})
	require.Equal(t, 200, resp.StatusCode, string(out))

	ctx := context.Background()
	evs := fetchAll(t, buf, buffer.EventsStream, 2)
	require.Len(t, evs, 2)
	byUser := map[string]event.Event{}
	for _, ev := range evs {
		byUser[ev.UserID] = ev
		require.Equal(t, "server", ev.Source)
		require.NotEmpty(t, ev.MessageID)
		require.Equal(t, "127.0.0.1", ev.IP)
		require.Equal(t, "server", ev.Device.Platform)
		require.JSONEq(t, `{"All":true}`, string(ev.Integrations))
	}
	require.JSONEq(t, `{"library":{"name":"analytics-go"},"locale":"de"}`, string(byUser["user-1"].Context), "item wins on conflict")
	require.JSONEq(t, `{"library":{"name":"analytics-go"},"locale":"en"}`, string(byUser["user-2"].Context))
	require.Equal(t, "Play", byUser["user-2"].Event)

	failedMsgs := fetchRaw(t, buf, buffer.FailedStream)
	require.Len(t, failedMsgs, 1, "one failed-stream message per request")
	require.Equal(t, "3", failedMsgs[0].Header[event.HeaderCount][0])
	var reasons []string
	require.NoError(t, event.Lines(failedMsgs[0].Data, func(_ int, line []byte) error {
		var f event.Failed
		require.NoError(t, jsonUnmarshal(line, &f))
		require.NotEmpty(t, f.Raw)
		require.Equal(t, "server", f.Source)
		reasons = append(reasons, f.Reason)
		return nil
	}))
	require.Equal(t, []string{event.ReasonNoEvent, event.ReasonNoUserID, event.ReasonUnknownType}, reasons)
	_ = ctx
}

func fetchRaw(t *testing.T, buf *buffer.Buffer, stream string) []*event.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := buf.Consumer(ctx, buffer.ConsumerSpec{Stream: stream, Name: "test-" + stream})
	require.NoError(t, err)
	msgs, err := c.Fetch(ctx, 100, 300*time.Millisecond)
	require.NoError(t, err)
	for _, m := range msgs {
		require.NoError(t, m.Ack(ctx))
	}
	return msgs
}

func fetchAll(t *testing.T, buf *buffer.Buffer, stream string, min int) []event.Event {
	t.Helper()
	var out []event.Event
	for _, m := range fetchRaw(t, buf, stream) {
		require.Equal(t, event.CodecNDJSON, m.Header[event.HeaderCodec][0])
		evs, err := event.Decode(m.Data)
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(len(evs)), m.Header[event.HeaderCount][0])
		require.Equal(t, m.Partition, event.Partition(evs[0].UserKey(), 4))
		out = append(out, evs...)
	}
	require.GreaterOrEqual(t, len(out), min)
	return out
}

// positions names each partition once, with its highest sequence, in
// partition order.
func TestPositions(t *testing.T) {
	bs := []*batch{{p: 7, seq: 40}, {p: 2, seq: 12}, {p: 7, seq: 41}, {p: 2, seq: 9}, {p: 0, seq: 3}}
	if got, want := positions(bs), "0:3,2:12,7:41"; got != want {
		t.Fatalf("positions = %q, want %q", got, want)
	}
}
