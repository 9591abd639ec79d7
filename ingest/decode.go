package ingest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/clickpipe/clickpipe/internal/jsonscan"
)

// limits bounds one request body, measured after decompression.
type limits struct {
	event, batch int64
	items, depth int
}

// readBody reads the request body into buf, gunzipping when asked, and
// refuses more than max decompressed bytes. The wire body is capped too, so a client
// cannot stream an endless compressed body.
func readBody(w http.ResponseWriter, r *http.Request, max int64, buf *bytes.Buffer) ([]byte, int64, error) {
	if r.ContentLength > max+(64<<10) {
		return nil, 0, fmt.Errorf("content-length %d: %w", r.ContentLength, ErrTooLarge)
	}
	wire := &countingReader{r: http.MaxBytesReader(w, r.Body, max+(64<<10))}
	var src io.Reader = wire
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(wire)
		if err != nil {
			return nil, wire.n, classifyRead(fmt.Errorf("opening gzip: %w", err))
		}
		defer zr.Close()
		src = zr
	default:
		return nil, 0, fmt.Errorf("content-encoding %q: %w", enc, ErrEncoding)
	}
	buf.Grow(int(min(max+1, 16<<10)))
	n, err := buf.ReadFrom(io.LimitReader(src, max+1))
	if err != nil {
		if errors.Is(wire.err, io.ErrUnexpectedEOF) {
			// The client closed before sending Content-Length bytes.
			return nil, wire.n, fmt.Errorf("reading body: %w: %w", ErrBodyShort, wire.err)
		}
		return nil, wire.n, classifyRead(err)
	}
	if n > max {
		return nil, wire.n, fmt.Errorf("body over %d bytes: %w", max, ErrTooLarge)
	}
	return buf.Bytes(), wire.n, nil
}

// classifyRead turns a body read failure into a catalogue error.
func classifyRead(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("reading body: %w: %w", ErrTooLarge, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("reading body: %w: %w", ErrBodyTimeout, err)
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum):
		return fmt.Errorf("reading body: %w: %w", ErrInvalidJSON, err)
	}
	return fmt.Errorf("reading body: %w: %w", ErrInvalidJSON, err)
}

type countingReader struct {
	r   io.Reader
	n   int64
	err error // the wire's error, apart from a decompressor's
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// checkJSON rejects invalid UTF-8 (encoding/json would silently replace it)
// and nesting deeper than maxDepth, in one pass without allocating.
func checkJSON(b []byte, maxDepth int) error {
	if !utf8.Valid(b) {
		return ErrInvalidUTF8
	}
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > maxDepth {
				return fmt.Errorf("depth over %d: %w", maxDepth, ErrTooDeep)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// envelope is a batch request: /v1/batch, /v1/import, /v1/b.
type envelope struct {
	Batch        []json.RawMessage `json:"batch"`
	WriteKey     string            `json:"writeKey"`
	SentAt       string            `json:"sentAt"`
	Context      json.RawMessage   `json:"context"`
	Integrations json.RawMessage   `json:"integrations"`
}

// request is a decoded request before per-item validation.
type request struct {
	items        []json.RawMessage
	writeKey     string
	sentAt       string
	context      json.RawMessage
	integrations json.RawMessage
	// impliedType is the type of a single-event route ("" for batches).
	impliedType string
}

// decodeRequest parses body for a route kind. Only an unparseable or
// oversize request is an error; per-item problems are found later.
//
// A single strict pass (scanRequest) checks and splits the body; anything
// it is not sure about (a malformed or hostile body, a shape that needs
// encoding/json's leniencies) goes through decodeRequestStd, the
// encoding/json decoder, which gives the catalogue error. Both give the
// same answer for every body the fast path accepts (FuzzDecodeDifferential).
func decodeRequest(body []byte, single bool, impliedType string, lim limits) (*request, error) {
	if req, ok := scanRequest(body, single, impliedType, lim); ok {
		return req, nil
	}
	return decodeRequestStd(body, single, impliedType, lim)
}

// envelopeFields are the keys scanRequest decodes, in envelope order
// (single events use the last two).
var envelopeFields = []string{"batch", "context", "integrations", "writeKey", "sentAt"}

// scanRequest is decodeRequest's fast path; false means "take the
// encoding/json path", not that the body is bad.
func scanRequest(body []byte, single bool, impliedType string, lim limits) (*request, bool) {
	body = bytes.TrimSpace(body)
	if single && int64(len(body)) > lim.event {
		return nil, false
	}
	// The scanner recurses; past lenientDepth (only with a raised
	// max_depth) the std path, which does not, takes over.
	s := scanner{jsonscan.Strict(body, min(lim.depth, lenientDepth))}
	if s.Peek() != '{' || !s.Enter() {
		return nil, false
	}
	req := &request{impliedType: impliedType}
	fields := envelopeFields
	if single {
		fields = fields[3:]
	}
	for n := 0; ; n++ {
		more, ok := s.Next(n, '}')
		if !ok {
			return nil, false
		}
		if !more {
			break
		}
		if !s.envelopeField(req, fields) {
			return nil, false
		}
	}
	if !s.AtEnd() {
		return nil, false
	}
	if single {
		req.items = []json.RawMessage{body}
		return req, true
	}
	if req.items == nil {
		return nil, false // no batch array: the std path says which error
	}
	req.context, req.integrations = nullToNil(req.context), nullToNil(req.integrations)
	return req, true
}

// envelopeField reads one key and its value into req; fields is the
// envelope (batch) or the single-event head (writeKey, sentAt).
func (s *scanner) envelopeField(req *request, fields []string) bool {
	k, flags, ok := s.Key()
	if !ok {
		return false
	}
	idx, ok := matchKey(k, flags, fields)
	if !ok {
		return false
	}
	if idx >= 0 && len(fields) == 2 {
		idx += 3
	}
	switch idx {
	case 0:
		return s.batchItems(req)
	case 1:
		req.context, ok = s.Value()
	case 2:
		req.integrations, ok = s.Value()
	case 3:
		return s.strField(&req.writeKey)
	case 4:
		return s.strField(&req.sentAt)
	default:
		ok = s.Skip()
	}
	return ok
}

// batchItems reads the batch array; null or another type is left to the
// std path.
func (s *scanner) batchItems(req *request) bool {
	items := make([]json.RawMessage, 0, 128)
	ok := s.Array(func() bool {
		raw, ok := s.Value()
		items = append(items, raw)
		return ok
	})
	req.items = items
	return ok
}

// strField decodes a string into dst like encoding/json into a string
// field: null leaves dst alone; another type is not this path's business.
func (s *scanner) strField(dst *string) bool {
	switch s.Peek() {
	case 'n':
		return s.Literal("null")
	case '"':
		tok, flags, ok := s.Quoted()
		if !ok {
			return false
		}
		*dst, ok = unquote(tok, flags)
		return ok
	}
	return false
}

// unquote returns a string token's value as encoding/json decodes it.
func unquote(tok []byte, flags jsonscan.Flags) (string, bool) {
	body := tok[1 : len(tok)-1]
	if flags == 0 || flags == jsonscan.NonASCII && utf8.Valid(body) {
		return string(body), true
	}
	return jsonscan.Unquote(body)
}

// decodeRequestStd is the encoding/json decoder of a request, the
// reference behaviour for every body and the path of every error.
func decodeRequestStd(body []byte, single bool, impliedType string, lim limits) (*request, error) {
	if err := checkJSON(body, lim.depth); err != nil {
		return nil, err
	}
	body = bytes.TrimSpace(body)
	if single {
		if int64(len(body)) > lim.event {
			return nil, fmt.Errorf("event over %d bytes: %w", lim.event, ErrTooLarge)
		}
		var head struct {
			WriteKey string `json:"writeKey"`
			SentAt   string `json:"sentAt"`
		}
		if len(body) == 0 || body[0] != '{' {
			return nil, fmt.Errorf("single event is not an object: %w", ErrInvalidJSON)
		}
		if err := json.Unmarshal(body, &head); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidJSON, err)
		}
		return &request{items: []json.RawMessage{body}, writeKey: head.WriteKey, sentAt: head.SentAt, impliedType: impliedType}, nil
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidJSON, err)
	}
	if env.Batch == nil {
		return nil, errEmptyEnvelope
	}
	return &request{
		items: env.Batch, writeKey: env.WriteKey, sentAt: env.SentAt,
		context: nullToNil(env.Context), integrations: nullToNil(env.Integrations),
	}, nil
}

func nullToNil(m json.RawMessage) json.RawMessage {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return m
}
