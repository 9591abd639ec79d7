package loadgen

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// Shape is which SDK's request format to imitate.
type Shape string

// Shapes, as captured from the SDKs (SEGMENT-API.md §7-8).
const (
	// ShapeNode is @segment/analytics-node: POST /v1/batch
	// {"batch":[...],"writeKey","sentAt"}.
	ShapeNode Shape = "node"
	// ShapeGo is analytics-go v3: POST /v1/batch
	// {"messageId","sentAt","batch":[...],"context":{"library"}}.
	ShapeGo Shape = "go"
	// ShapeAJSBatch is analytics.js with the batching strategy: POST /v1/b,
	// text/plain, {"writeKey","batch":[...],"sentAt"}.
	ShapeAJSBatch Shape = "ajs-batch"
	// ShapeAJS is analytics.js's default: one event per request to
	// /v1/t, /v1/p, /v1/s or /v1/i with writeKey and sentAt in the event.
	ShapeAJS Shape = "ajs"
)

// Library is what context.library and User-Agent say.
type Library struct {
	Name, Version, UserAgent string
}

// Library of the SDK this shape imitates.
func (s Shape) Library() Library {
	switch s {
	case ShapeGo:
		return Library{"analytics-go", "3.0.0", "analytics-go (version: 3.0.0)"}
	case ShapeAJS, ShapeAJSBatch:
		return Library{"analytics.js", "next-1.84.3", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}
	default:
		return Library{"@segment/analytics-node", "3.1.0", "analytics-node-next/latest"}
	}
}

// Validate reports an unknown shape.
func (s Shape) Validate() error {
	switch s {
	case ShapeNode, ShapeGo, ShapeAJSBatch, ShapeAJS:
		return nil
	}
	return fmt.Errorf("shape %q is not one of node, go, ajs-batch, ajs", s)
}

// single reports whether every request carries one event.
func (s Shape) single() bool { return s == ShapeAJS }

// request is one HTTP request ready to (re)send: the same bytes, hence
// the same messageIds, on every attempt.
type request struct {
	target      string // base URL
	path        string
	contentType string
	gzip        bool
	body        []byte
	first, last uint64 // generator sequence numbers it carries
	events      int
	intended    time.Time // open loop: when it was due
}

// encoder builds request bodies in the chosen shape, reusing buffers.
type encoder struct {
	shape    Shape
	writeKey string
	gzip     bool
	raw      []byte
	zbuf     bytes.Buffer
	zw       *gzip.Writer
	batchSeq uint64
	shard    int
}

func newEncoder(shape Shape, writeKey string, gz bool, shard int) *encoder {
	e := &encoder{shape: shape, writeKey: writeKey, gzip: gz, shard: shard}
	if gz {
		e.zw, _ = gzip.NewWriterLevel(&e.zbuf, gzip.BestSpeed)
	}
	return e
}

// basicAuth is the Authorization header value SDKs send.
func basicAuth(writeKey string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(writeKey+":"))
}

// build fills req with n events from g.
func (e *encoder) build(g *Generator, n int, now time.Time, req *request) {
	b := e.raw[:0]
	req.contentType = "application/json"
	req.path = "/v1/batch"
	switch e.shape {
	case ShapeGo:
		e.batchSeq++
		b = append(b, `{"messageId":"lgb-`...)
		b = strconv.AppendInt(b, int64(e.shard), 10)
		b = append(b, '-')
		b = strconv.AppendUint(b, e.batchSeq, 10)
		b = append(b, `","sentAt":"`...)
		b = now.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","batch":[`...)
	case ShapeAJSBatch:
		req.path, req.contentType = "/v1/b", "text/plain"
		b = append(b, `{"writeKey":"`...)
		b = append(b, e.writeKey...)
		b = append(b, `","batch":[`...)
	case ShapeAJS:
		n = 1
		req.contentType = "text/plain"
	default:
		b = append(b, `{"batch":[`...)
	}
	var it Item
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b, it = g.Next(b)
		if i == 0 {
			req.first = it.Seq
		}
	}
	req.last, req.events = it.Seq, n
	switch e.shape {
	case ShapeGo:
		b = append(b, `],"context":{"library":{"name":"analytics-go","version":"3.0.0"}}}`...)
	case ShapeAJS:
		req.path = [...]string{"/v1/t", "/v1/p", "/v1/s", "/v1/i"}[it.Kind]
		b = b[:len(b)-1] // reopen the event object
		b = append(b, `,"writeKey":"`...)
		b = append(b, e.writeKey...)
		b = append(b, `","sentAt":"`...)
		b = now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, `"}`...)
	case ShapeAJSBatch:
		b = append(b, `],"sentAt":"`...)
		b = now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, `"}`...)
	default:
		b = append(b, `],"writeKey":"`...)
		b = append(b, e.writeKey...)
		b = append(b, `","sentAt":"`...)
		b = now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, `"}`...)
	}
	e.raw = b
	req.gzip = e.gzip
	if !e.gzip {
		req.body = append(req.body[:0], b...)
		return
	}
	e.zbuf.Reset()
	e.zw.Reset(&e.zbuf)
	_, _ = e.zw.Write(b)
	_ = e.zw.Close()
	req.body = append(req.body[:0], e.zbuf.Bytes()...)
}
