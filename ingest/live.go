package ingest

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// liveHub fans acknowledged events out to live-event subscribers, off the
// acknowledgement path: the publisher only offers a sealed batch to a
// bounded queue (dropped, counted, when full), and one goroutine copies
// its lines to the subscribers. Each subscriber has a bounded queue in
// events and bytes; when it is full the event is dropped for that
// subscriber and counted, so a slow reader never slows ingest.
type liveHub struct {
	size     int
	maxBytes int64
	maxSubs  int
	m        *metrics
	n        atomic.Int32
	queue    chan *batch
	mu       sync.Mutex
	subs     map[*subscriber]struct{}
	closed   bool
	closeCh  chan struct{}
}

type subscriber struct {
	source, userID string
	ch             chan []byte
	queued         atomic.Int64 // bytes in ch
}

// liveQueue is the number of sealed batches waiting for fan-out.
const liveQueue = 256

var (
	errLiveFull   = errors.New("ingest: live-event subscriber limit reached")
	errLiveClosed = errors.New("ingest: live events closed")
)

func newLiveHub(cfg Config, m *metrics) *liveHub {
	return &liveHub{
		size: cfg.LiveBuffer, maxBytes: cfg.LiveBufferBytes, maxSubs: cfg.LiveMaxSubscribers, m: m,
		queue: make(chan *batch, liveQueue), subs: map[*subscriber]struct{}{}, closeCh: make(chan struct{}),
	}
}

func (h *liveHub) subscribe(source, userID string) (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errLiveClosed
	}
	if len(h.subs) >= h.maxSubs {
		return nil, errLiveFull
	}
	s := &subscriber{source: source, userID: userID, ch: make(chan []byte, h.size)}
	h.subs[s] = struct{}{}
	h.n.Add(1)
	h.m.liveSubs.Inc()
	return s, nil
}

func (h *liveHub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		h.n.Add(-1)
		h.m.liveSubs.Dec()
	}
}

// close ends every subscription (their handlers return) and run.
func (h *liveHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.closeCh)
	}
}

// publish offers an acknowledged batch for fan-out without waiting. The
// batch is sealed: nothing writes its bytes any more.
func (h *liveHub) publish(b *batch) {
	if h.n.Load() == 0 {
		return
	}
	select {
	case h.queue <- b:
	default:
		h.m.liveDropped.Add(float64(b.enc.Count()))
	}
}

// run fans queued batches out until close.
func (h *liveHub) run() {
	for {
		select {
		case b := <-h.queue:
			h.fanout(b)
		case <-h.closeCh:
			return
		}
	}
}

func (h *liveHub) fanout(b *batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = event.Lines(b.enc.Bytes(), func(i int, line []byte) error {
		m := b.meta[i]
		for s := range h.subs {
			if (s.source != "" && s.source != m.source) || (s.userID != "" && s.userID != m.userID) {
				continue
			}
			if s.queued.Load()+int64(len(line)) > h.maxBytes {
				h.m.liveDropped.Inc()
				continue
			}
			select {
			case s.ch <- line:
				s.queued.Add(int64(len(line)))
			default:
				h.m.liveDropped.Inc()
			}
		}
		return nil
	})
}

// liveHeartbeat keeps idle SSE connections open through proxies.
const liveHeartbeat = 15 * time.Second

// serveLive streams events as server-sent events until the client leaves
// or ingest shuts down.
func (in *Ingest) serveLive(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		in.writeErr(w, ErrMethod)
		return
	}
	q := r.URL.Query()
	s, err := in.hub.subscribe(q.Get("source"), q.Get("user_id"))
	switch {
	case errors.Is(err, errLiveFull):
		w.Header().Set("Retry-After", "10")
		httpx.WriteError(w, http.StatusServiceUnavailable, "live_subscribers_full", err.Error())
		return
	case err != nil:
		in.writeErr(w, ErrStopped)
		return
	}
	defer in.hub.unsubscribe(s)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(": clickpipe live events\n\n"))
	_ = rc.Flush()
	tick := time.NewTicker(liveHeartbeat)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-in.hub.closeCh:
			return
		case <-tick.C:
			_, err = w.Write([]byte(": keep-alive\n\n"))
		case line := <-s.ch:
			s.queued.Add(-int64(len(line)))
			err = writeSSE(w, line)
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

func writeSSE(w http.ResponseWriter, line []byte) error {
	buf := make([]byte, 0, len(line)+20)
	buf = append(buf, "event: event\ndata: "...)
	buf = append(buf, line...)
	buf = append(buf, "\n\n"...)
	_, err := w.Write(buf)
	return err
}
