package ingest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

var successBody = []byte(`{"success":true}` + "\n")

// serveHTTP dispatches by the route table, answers CORS, recovers panics
// and records request metrics.
func (in *Ingest) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt, param, ok := matchRoute(r.URL.Path)
	status := 0
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			in.m.panics.Inc()
			in.log.Error("handler panic", "route", rt.name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			status = in.writeErr(w, ErrInternal)
		}
		in.m.requests.WithLabelValues(rt.name, strconv.Itoa(status)).Inc()
		in.m.reqDuration.WithLabelValues(rt.name).Observe(time.Since(start).Seconds())
	}()
	allowCORS(w, r)
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case !ok:
		status = in.writeErr(w, ErrNotFound)
	case r.Method == http.MethodOptions:
		status = preflight(w, r)
	case rt.kind == kindPixel && get:
		status = in.servePixel(w, r, rt)
	case rt.kind == kindSettings && get:
		status = in.serveSettings(w, r, param)
	case (rt.kind == kindBatch || rt.kind == kindSingle) && r.Method == http.MethodPost:
		status = in.serveEvents(w, r, rt)
	default:
		w.Header().Set("Allow", allowedMethods[rt.kind]+", OPTIONS")
		status = in.writeErr(w, ErrMethod)
	}
}

// allowCORS lets browsers on any origin call the API, with credentials
// when the Origin is mirrored.
func allowCORS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if o := r.Header.Get("Origin"); o != "" {
		h.Set("Access-Control-Allow-Origin", o)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
		return
	}
	h.Set("Access-Control-Allow-Origin", "*")
}

func preflight(w http.ResponseWriter, r *http.Request) int {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, GET, OPTIONS")
	allow := r.Header.Get("Access-Control-Request-Headers")
	if allow == "" {
		allow = "Content-Type, Authorization, X-Retry-Count"
	}
	h.Set("Access-Control-Allow-Headers", allow)
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
	return http.StatusNoContent
}

// serveEvents handles batch and single-event POSTs.
func (in *Ingest) serveEvents(w http.ResponseWriter, r *http.Request, rt route) int {
	if err := in.accept(w, r, rt); err != nil {
		return in.writeErr(w, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(successBody)
	return http.StatusOK
}

func (in *Ingest) limits() limits {
	if brokenNoBodyLimit {
		return limits{event: 1 << 40, batch: 1 << 40, items: 1 << 30, depth: 1 << 20}
	}
	return limits{event: in.cfg.MaxEventBytes, batch: in.cfg.MaxBatchBytes, items: in.cfg.MaxBatchItems, depth: in.cfg.MaxDepth}
}

// accept authenticates, reads, decodes and stores one request; nil means
// every accepted event and every failed item is acknowledged.
func (in *Ingest) accept(w http.ResponseWriter, r *http.Request, rt route) error {
	if !in.admit() {
		return ErrStopped
	}
	defer in.inflight.Done()
	if err := in.guardBody(w, r); err != nil {
		return closeAfter(w, err)
	}
	hk := headerKey(r)
	if hk != "" && in.keys.lookup(hk) < 0 {
		return closeAfter(w, ErrUnauthorized) // before reading the body
	}
	ip := clientIP(r, in.trusted)
	if !in.perIP.enter(ip) {
		in.m.events.WithLabelValues("client_busy", "").Inc()
		return closeAfter(w, ErrIPBusy)
	}
	defer in.perIP.leave(ip)
	if in.deps.Gate != nil {
		if err := in.deps.Gate.Admit(); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	max := in.cfg.MaxBatchBytes
	if rt.kind == kindSingle {
		max = in.cfg.MaxEventBytes
	}
	if brokenNoBodyLimit {
		max = 1 << 40
	}
	buf := in.bodies.Get().(*bytes.Buffer)
	defer in.putBody(buf)
	body, wire, err := readBody(w, r, max, buf)
	in.m.bytesIn.WithLabelValues("wire").Add(float64(wire))
	if err != nil {
		return err
	}
	in.m.bytesIn.WithLabelValues("decoded").Add(float64(len(body)))
	req, err := decodeRequest(body, rt.kind == kindSingle, rt.typ, in.limits())
	if err != nil {
		return err
	}
	src, err := in.keys.authenticate(hk, req.writeKey)
	if err != nil {
		return err
	}
	return in.store(w.Header(), r, req, src)
}

// closeAfter marks the answer to a request refused before its body was
// read as the connection's last: net/http would otherwise wait for the
// unread body (up to the body deadline) before sending the answer.
func closeAfter(w http.ResponseWriter, err error) error {
	w.Header().Set("Connection", "close")
	return err
}

// store normalises the items of a decoded request, adds the valid ones to
// group-commit batches, publishes the invalid ones to the failed stream,
// and waits for every covering ack. With h, it sets the stored events'
// positions header (read-your-writes).
func (in *Ingest) store(h http.Header, r *http.Request, req *request, src int) error {
	now := in.now()
	if ok, wait := in.lim.take(src, len(req.items), now); !ok {
		in.m.events.WithLabelValues("rate_limited", "").Add(float64(len(req.items)))
		return &retryError{err: ErrRateLimited, after: wait}
	}
	meta := reqMeta{
		source: in.keys.names[src], receivedAt: now, sentAt: req.sentAt,
		clientIP: clientIP(r, in.trusted), headerUA: r.Header.Get("User-Agent"),
		batchCtx: req.context, batchInteg: req.integrations, implied: req.impliedType,
	}
	var failed event.Encoder
	var batches []*batch
	var line []byte
	ev := new(event.Event) // reused: normaliseInto overwrites it
	accepted := 0
	for i, raw := range req.items {
		if i >= in.cfg.MaxBatchItems {
			in.addFailed(&failed, raw, &meta, &invalidItem{reason: event.ReasonTooManyItems, detail: fmt.Sprintf("item %d of a batch limited to %d", i, in.cfg.MaxBatchItems)})
			continue
		}
		ev.UserID, ev.AnonymousID, ev.PreviousID = "", "", "" // not an earlier item's if it fails early
		if bad := in.norm.normaliseInto(ev, raw, &meta); bad != nil {
			if in.suppressed(ev) { // an invalid item of a suppressed user is not kept either
				in.m.suppressed.Inc()
				continue
			}
			in.addFailed(&failed, raw, &meta, bad)
			continue
		}
		if ev.Bot {
			if in.cfg.Bots == BotDrop {
				in.m.events.WithLabelValues("bot_dropped", "").Inc()
				continue
			}
			in.m.events.WithLabelValues("bot_flagged", "").Inc()
		}
		if in.suppressed(ev) {
			// Not stored, yet answered as accepted: an SDK retries
			// anything else forever (docs/privacy.md).
			in.m.suppressed.Inc()
			continue
		}
		var err error
		line, err = appendEvent(line[:0], ev) // add copies it
		if err != nil {
			in.addFailed(&failed, raw, &meta, &invalidItem{reason: event.ReasonInvalidItem, detail: err.Error(), messageID: ev.MessageID})
			continue
		}
		b, err := in.com.add(event.Partition(ev.UserKey(), in.deps.Partitions), line, liveMeta{meta.source, ev.UserID})
		if err != nil {
			return err
		}
		if !slices.Contains(batches, b) {
			batches = append(batches, b)
		}
		accepted++
	}
	if failed.Count() > 0 {
		if err := in.publishFailed(r.Context(), &failed); err != nil {
			if in.deps.RequireFailedStored {
				return err
			}
			// The valid events are answered by what happens to them: a
			// 503 here would make the SDK resend events already stored.
			in.m.events.WithLabelValues("invalid_dropped", "").Add(float64(failed.Count()))
			in.log.Warn("invalid items dropped: the failed-events stream refused them",
				"source", meta.source, "items", failed.Count(), "err", err)
		}
	}
	if err := waitBatches(r.Context(), batches); err != nil {
		in.m.events.WithLabelValues("not_stored", "").Add(float64(accepted))
		return err
	}
	in.m.events.WithLabelValues("accepted", "").Add(float64(accepted))
	if h != nil && len(batches) > 0 {
		h.Set(PositionHeader, positions(batches))
		h.Set("Access-Control-Expose-Headers", PositionHeader)
	}
	return nil
}

// PositionHeader carries, on a 200, where the request's events were
// stored: "partition:sequence" pairs (the highest stream sequence per
// partition), comma-separated. A query given it as ?after= answers only
// once the user's partition has applied its sequence (docs/api.md).
const PositionHeader = "Clickpipe-Position"

// positions formats the batches' highest sequence per partition. It
// sorts batches (waited for already) instead of building a map: it runs
// once per request.
func positions(batches []*batch) string {
	slices.SortFunc(batches, func(a, b *batch) int {
		return cmp.Or(cmp.Compare(a.p, b.p), cmp.Compare(a.seq, b.seq))
	})
	out := make([]byte, 0, 16*len(batches))
	for i, b := range batches {
		if i+1 < len(batches) && batches[i+1].p == b.p {
			continue // a later batch of the partition has the higher sequence
		}
		if len(out) > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendInt(out, int64(b.p), 10)
		out = append(out, ':')
		out = strconv.AppendUint(out, b.seq, 10)
	}
	return string(out)
}

// maxPooledBody bounds the buffers kept for reuse between requests.
const maxPooledBody = 1 << 20

// putBody returns a request body buffer for reuse. Nothing may keep a
// slice of it: events are copied into group-commit messages and failed
// items into their own encoder before store returns.
func (in *Ingest) putBody(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBody {
		buf.Reset()
		in.bodies.Put(buf)
	}
}

// waitBatches returns once every batch is published, with the first error.
func waitBatches(ctx context.Context, batches []*batch) error {
	if brokenEarlyAck {
		return nil
	}
	for _, b := range batches {
		select {
		case <-b.done:
			if b.err != nil {
				return b.err
			}
		case <-ctx.Done():
			return errClientGone
		}
	}
	return nil
}

// addFailed records one rejected item for the failed-events stream.
func (in *Ingest) addFailed(enc *event.Encoder, raw json.RawMessage, m *reqMeta, bad *invalidItem) {
	in.m.events.WithLabelValues("invalid", bad.reason).Inc()
	f := event.Failed{Reason: bad.reason, Detail: bad.detail, Source: m.source, MessageID: bad.messageID, ReceivedAt: m.receivedAt}
	if json.Valid(raw) {
		f.Raw = raw
	} else {
		f.RawText = string(raw)
	}
	line, err := json.Marshal(&f)
	if err != nil {
		in.log.Error("encoding failed item", "reason", bad.reason, "err", err)
		return
	}
	enc.AppendEncoded(line)
}

// publishFailed stores a request's rejected items as one message.
func (in *Ingest) publishFailed(ctx context.Context, enc *event.Encoder) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.PublishTimeout)
	defer cancel()
	if _, err := in.deps.Publisher.PublishFailed(ctx, enc.Bytes(), batchHeader(enc.Count())); err != nil {
		in.m.publishFails.WithLabelValues("failed").Inc()
		return fmt.Errorf("%w: failed-events stream: %w", ErrPublish, err)
	}
	return nil
}

// gif is a transparent 1x1 GIF.
var gif = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// servePixel always answers a 1x1 gif; failures are logged and counted.
func (in *Ingest) servePixel(w http.ResponseWriter, r *http.Request, rt route) int {
	if err := in.acceptPixel(r, rt); err != nil {
		e := statusOf(err)
		in.m.events.WithLabelValues("pixel_rejected", e.code).Inc()
		in.log.Debug("pixel request rejected", "type", rt.typ, "code", e.code) // the error may quote payload bytes
	}
	h := w.Header()
	h.Set("Content-Type", "image/gif")
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(gif)
	return http.StatusOK
}

func (in *Ingest) acceptPixel(r *http.Request, rt route) error {
	if !in.admit() {
		return ErrStopped
	}
	defer in.inflight.Done()
	if in.deps.Gate != nil {
		if err := in.deps.Gate.Admit(); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	body, key := pixelPayload(r.URL.Query())
	req, err := decodeRequest(body, true, rt.typ, in.limits())
	if err != nil {
		return err
	}
	if req.writeKey == "" {
		req.writeKey = key
	}
	src, err := in.keys.authenticate(headerKey(r), req.writeKey)
	if err != nil {
		return err
	}
	return in.store(nil, r, req, src)
}

// pixelPayload is the event of a pixel request: base64 JSON in data=, or
// flat query parameters (unknown ones become properties).
func pixelPayload(q url.Values) ([]byte, string) {
	if d := q.Get("data"); d != "" {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(d); err == nil {
				return b, q.Get("writeKey")
			}
		}
	}
	top := map[string]any{}
	props := map[string]string{}
	for k, v := range q {
		switch k {
		case "data":
		case "userId", "anonymousId", "event", "name", "messageId", "timestamp", "writeKey", "groupId", "previousId":
			top[k] = v[0]
		default:
			props[strings.TrimPrefix(k, "properties.")] = v[0]
		}
	}
	if len(props) > 0 {
		top["properties"] = props
	}
	b, _ := json.Marshal(top)
	return b, q.Get("writeKey")
}

// serveSettings answers analytics.js's settings request so that a page
// needs only cdnURL and apiHost pointed at clickpipe.
func (in *Ingest) serveSettings(w http.ResponseWriter, r *http.Request, key string) int {
	if in.keys.lookup(key) < 0 {
		return in.writeErr(w, ErrUnauthorized)
	}
	apiHost, proto, _ := in.cfg.publicHost() // validated in New
	if apiHost == "" {
		// No configured public URL: the Host the client used. Caches
		// must key on it, or one request with a forged Host would point
		// every visitor's events elsewhere.
		w.Header().Add("Vary", "Host, X-Forwarded-Proto")
		apiHost, proto = r.Host+"/v1", "http"
		if r.TLS != nil || (isTrusted(parseAddr(r.RemoteAddr), in.trusted) && r.Header.Get("X-Forwarded-Proto") == "https") {
			proto = "https"
		}
	}
	doc := map[string]any{
		"integrations": map[string]any{
			"Segment.io": map[string]any{
				"apiKey": key, "apiHost": apiHost, "protocol": proto,
				"unbundledIntegrations": []string{}, "addBundledMetadata": true,
			},
		},
		"plan": map[string]any{
			"track":    map[string]any{"__default": map[string]any{"enabled": true, "integrations": map[string]any{}}},
			"identify": map[string]any{"__default": map[string]any{"enabled": true}},
			"group":    map[string]any{"__default": map[string]any{"enabled": true}},
		},
		"edgeFunction": map[string]any{}, "analyticsNextEnabled": true, "middlewareSettings": map[string]any{},
		"enabledMiddleware": map[string]any{}, "metrics": map[string]any{"sampleRate": 0}, "remotePlugins": []any{},
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpx.WriteJSON(w, http.StatusOK, doc)
	return http.StatusOK
}

// suppressed reports whether any id of ev is suppressed.
func (in *Ingest) suppressed(ev *event.Event) bool {
	s := in.deps.Suppressor
	if s == nil {
		return false
	}
	for _, id := range [...]string{ev.UserID, ev.AnonymousID, ev.PreviousID} {
		if id != "" && s.Suppressed(id) {
			return true
		}
	}
	return false
}
