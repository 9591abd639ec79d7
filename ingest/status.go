package ingest

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/clickpipe/clickpipe/internal/httpx"
)

// Request-level errors. Every error a handler answers with is one of these
// (possibly wrapped); statusOf maps them to the documented catalogue in
// docs/format/event.md. Invalid items inside a valid request are not
// errors: they go to the failed-events stream and the request gets 200.
var (
	ErrTooLarge      = errors.New("ingest: payload too large")
	ErrInvalidJSON   = errors.New("ingest: invalid JSON")
	ErrInvalidUTF8   = errors.New("ingest: invalid UTF-8")
	ErrTooDeep       = errors.New("ingest: JSON nested too deeply")
	ErrEncoding      = errors.New("ingest: unsupported content encoding")
	ErrBodyTimeout   = errors.New("ingest: body read timed out")
	ErrBodyShort     = errors.New("ingest: body shorter than its Content-Length")
	ErrAmbiguousLen  = errors.New("ingest: both Content-Length and Transfer-Encoding")
	ErrIPBusy        = errors.New("ingest: too many requests in flight from this client address")
	ErrUnauthorized  = errors.New("ingest: invalid write key")
	ErrKeyConflict   = errors.New("ingest: write keys in header and body disagree")
	ErrRateLimited   = errors.New("ingest: rate limit exceeded")
	ErrUnavailable   = errors.New("ingest: not accepting events right now")
	ErrPublish       = errors.New("ingest: events not stored")
	ErrStopped       = errors.New("ingest: shutting down")
	ErrNotFound      = errors.New("ingest: no such route")
	ErrMethod        = errors.New("ingest: method not allowed")
	ErrInternal      = errors.New("ingest: internal error")
	errClientGone    = errors.New("ingest: client went away")
	errEmptyEnvelope = errors.New("ingest: batch envelope without batch array")
)

// statusEntry is one row of the catalogue.
type statusEntry struct {
	err    error
	status int
	code   string
	// retry: whether Retry-After (and X-RateLimit-Reset) is sent.
	retry bool
}

// statusTable is the one place HTTP status codes are chosen. A transient
// server condition is always 503 (or 429 for a per-key limit): SDKs drop
// other 4xx answers.
var statusTable = []statusEntry{
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "payload_too_large", false},
	{ErrInvalidJSON, http.StatusBadRequest, "invalid_json", false},
	{errEmptyEnvelope, http.StatusBadRequest, "invalid_json", false},
	{ErrInvalidUTF8, http.StatusBadRequest, "invalid_utf8", false},
	{ErrTooDeep, http.StatusBadRequest, "too_deep", false},
	{ErrEncoding, http.StatusUnsupportedMediaType, "unsupported_encoding", false},
	{ErrBodyTimeout, http.StatusRequestTimeout, "body_timeout", false},
	{ErrBodyShort, http.StatusRequestTimeout, "body_incomplete", false},
	{ErrAmbiguousLen, http.StatusBadRequest, "ambiguous_length", false},
	{ErrIPBusy, http.StatusTooManyRequests, "client_busy", true},
	{ErrUnauthorized, http.StatusUnauthorized, "invalid_write_key", false},
	{ErrKeyConflict, http.StatusUnauthorized, "write_key_conflict", false},
	{ErrRateLimited, http.StatusTooManyRequests, "rate_limited", true},
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable", true},
	{ErrPublish, http.StatusServiceUnavailable, "not_stored", true},
	{ErrStopped, http.StatusServiceUnavailable, "shutting_down", true},
	{ErrNotFound, http.StatusNotFound, "not_found", false},
	{ErrMethod, http.StatusMethodNotAllowed, "method_not_allowed", false},
	{ErrInternal, http.StatusServiceUnavailable, "internal", true},
	{errClientGone, http.StatusServiceUnavailable, "client_gone", true},
}

// statusOf finds err's catalogue row; unknown errors are 503 so that SDKs
// retry rather than drop.
func statusOf(err error) statusEntry {
	for _, e := range statusTable {
		if errors.Is(err, e.err) {
			return e
		}
	}
	return statusEntry{ErrInternal, http.StatusServiceUnavailable, "internal", true}
}

// retryError carries a specific Retry-After (rate limits).
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// writeErr answers err per the catalogue and returns the status sent.
func (in *Ingest) writeErr(w http.ResponseWriter, err error) int {
	e := statusOf(err)
	if e.retry {
		after := in.cfg.RetryAfter
		var re *retryError
		if errors.As(err, &re) && re.after > 0 {
			after = re.after
		}
		secs := int64((after + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(in.now().Add(time.Duration(secs)*time.Second).UnixMilli(), 10))
	}
	if e.status == http.StatusRequestTimeout || e.err == ErrAmbiguousLen {
		// The connection's framing can no longer be trusted.
		w.Header().Set("Connection", "close")
	}
	httpx.WriteError(w, e.status, e.code, e.err.Error())
	return e.status
}
