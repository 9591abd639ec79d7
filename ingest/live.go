package ingest

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// liveHub fans acknowledged events out to live-event subscribers. Each
// subscriber has a bounded queue; when it is full the event is dropped for
// that subscriber and counted, so a slow reader never slows ingest.
type liveHub struct {
	size    int
	m       *metrics
	n       atomic.Int32
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	closed  bool
	closeCh chan struct{}
}

type subscriber struct {
	source, userID string
	ch             chan []byte
}

func newLiveHub(size int, m *metrics) *liveHub {
	return &liveHub{size: size, m: m, subs: map[*subscriber]struct{}{}, closeCh: make(chan struct{})}
}

func (h *liveHub) subscribe(source, userID string) (*subscriber, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, false
	}
	s := &subscriber{source: source, userID: userID, ch: make(chan []byte, h.size)}
	h.subs[s] = struct{}{}
	h.n.Add(1)
	h.m.liveSubs.Inc()
	return s, true
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

// close ends every subscription (their handlers return).
func (h *liveHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.closeCh)
	}
}

// publish offers the events of an acknowledged batch to subscribers.
func (h *liveHub) publish(b *batch) {
	if h.n.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = event.Lines(b.enc.Bytes(), func(i int, line []byte) error {
		m := b.meta[i]
		for s := range h.subs {
			if (s.source != "" && s.source != m.source) || (s.userID != "" && s.userID != m.userID) {
				continue
			}
			select {
			case s.ch <- line:
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
	s, ok := in.hub.subscribe(q.Get("source"), q.Get("user_id"))
	if !ok {
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
