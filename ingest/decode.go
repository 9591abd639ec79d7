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
)

// limits bounds one request body, measured after decompression.
type limits struct {
	event, batch int64
	items, depth int
}

// readBody reads the request body, gunzipping when asked, and refuses more
// than max decompressed bytes. The wire body is capped too, so a client
// cannot stream an endless compressed body.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, int64, error) {
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
	buf := bytes.NewBuffer(make([]byte, 0, min(max+1, 16<<10)))
	n, err := buf.ReadFrom(io.LimitReader(src, max+1))
	if err != nil {
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
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
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
func decodeRequest(body []byte, single bool, impliedType string, lim limits) (*request, error) {
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
