package buffer

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// Bounds of GET /v1/failed/recent: items returned, and FAILED messages read
// (one message holds the rejected items of one request).
const (
	recentFailedDefault  = 50
	recentFailedMax      = 200
	recentFailedMessages = 200
)

// RecentFailed is the body of GET /v1/failed/recent.
type RecentFailed struct {
	// Items are event.Failed records, newest first, as stored.
	Items []json.RawMessage `json:"items"`
	// Messages and LastSeq describe the FAILED stream.
	Messages uint64 `json:"messages"`
	LastSeq  uint64 `json:"last_seq"`
}

// RecentFailedHandler serves GET /v1/failed/recent?limit=N: the newest
// stored failed items with their original bytes (the console's samples).
// It reads at most recentFailedMessages messages backwards from the end of
// the stream.
func (b *Buffer) RecentFailedHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := recentFailedDefault
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > recentFailedMax {
				httpx.WriteError(w, http.StatusBadRequest, "invalid_parameter", "limit must be an integer in 1..200")
				return
			}
			limit = n
		}
		out, err := b.recentFailed(r, limit)
		if err != nil {
			httpx.WriteError(w, http.StatusServiceUnavailable, "buffer_unavailable", err.Error())
			return
		}
		httpx.WriteJSON(w, http.StatusOK, out)
	})
}

func (b *Buffer) recentFailed(r *http.Request, limit int) (RecentFailed, error) {
	ctx := r.Context()
	st, err := b.State(ctx, FailedStream)
	if err != nil {
		return RecentFailed{}, err
	}
	out := RecentFailed{Items: []json.RawMessage{}, Messages: st.Messages, LastSeq: st.LastSeq}
	for seq, read := st.LastSeq, 0; seq >= st.FirstSeq && seq > 0 && read < recentFailedMessages && len(out.Items) < limit; seq, read = seq-1, read+1 {
		msg, err := b.GetMessage(ctx, FailedStream, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return RecentFailed{}, err
		}
		var lines []json.RawMessage
		_ = event.Lines(msg.Data, func(_ int, line []byte) error {
			if json.Valid(line) {
				lines = append(lines, json.RawMessage(line))
			}
			return nil
		})
		for i := len(lines) - 1; i >= 0 && len(out.Items) < limit; i-- {
			out.Items = append(out.Items, lines[i])
		}
	}
	return out, nil
}

// Bounds of GET /v1/failed: FAILED messages read per page.
const (
	failedPageDefault = 100
	failedPageMax     = 1000
)

// FailedPage is the body of GET /v1/failed: stored failed items in stream
// order, for tools that page through all of them (clickpipe failed
// replay).
type FailedPage struct {
	Items []FailedRecord `json:"items"`
	// NextSeq is the after_seq of the next page; LastSeq the stream's end
	// when the page was read (the listing is complete once NextSeq reaches
	// it).
	NextSeq uint64 `json:"next_seq"`
	LastSeq uint64 `json:"last_seq"`
}

// FailedRecord is one failed item and where it is stored.
type FailedRecord struct {
	Seq   uint64          `json:"seq"`
	Index int             `json:"index"`
	Item  json.RawMessage `json:"item"`
}

// FailedPageHandler serves GET /v1/failed?after_seq=N&limit=M: the items of
// up to M FAILED messages after stream sequence N.
func (b *Buffer) FailedPageHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		after, err := strconv.ParseUint(q.Get("after_seq"), 10, 64)
		if q.Get("after_seq") == "" {
			after, err = 0, nil
		}
		if err != nil {
			httpx.WriteError(w, http.StatusBadRequest, "invalid_parameter", "after_seq must be a non-negative integer")
			return
		}
		limit := failedPageDefault
		if s := q.Get("limit"); s != "" {
			if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > failedPageMax {
				httpx.WriteError(w, http.StatusBadRequest, "invalid_parameter", "limit must be an integer in 1..1000")
				return
			}
		}
		page, err := b.failedPage(r, after, limit)
		if err != nil {
			httpx.WriteError(w, http.StatusServiceUnavailable, "buffer_unavailable", err.Error())
			return
		}
		httpx.WriteJSON(w, http.StatusOK, page)
	})
}

func (b *Buffer) failedPage(r *http.Request, after uint64, limit int) (FailedPage, error) {
	ctx := r.Context()
	st, err := b.State(ctx, FailedStream)
	if err != nil {
		return FailedPage{}, err
	}
	page := FailedPage{Items: []FailedRecord{}, NextSeq: max(after, st.FirstSeq-min(st.FirstSeq, 1)), LastSeq: st.LastSeq}
	for seq := page.NextSeq + 1; seq <= st.LastSeq && limit > 0; seq++ {
		page.NextSeq = seq
		msg, err := b.GetMessage(ctx, FailedStream, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return FailedPage{}, err
		}
		limit--
		_ = event.Lines(msg.Data, func(i int, line []byte) error {
			if json.Valid(line) {
				page.Items = append(page.Items, FailedRecord{Seq: seq, Index: i, Item: json.RawMessage(line)})
			}
			return nil
		})
	}
	return page, nil
}
