package loadgen

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"net/http"
	"strings"
)

// hostile sends one malformed or abusive request of the kinds the ingest
// must refuse cleanly; it is never retried and never witnessed.
func (r *Runner) hostile(ctx context.Context, rng *rand.Rand) {
	var body []byte
	auth, enc := r.auth, ""
	switch rng.Intn(5) {
	case 0: // truncated JSON
		body = []byte(`{"batch":[{"type":"track","event":"x","userId":"h1"`)
	case 1: // wrong write key
		auth = basicAuth("wk_not_a_key")
		body = []byte(`{"batch":[{"type":"track","event":"x","userId":"h1","messageId":"h-1"}]}`)
	case 2: // oversized: 600 KB of one property
		body = []byte(`{"batch":[{"type":"track","event":"x","userId":"h1","properties":{"p":"` +
			strings.Repeat("A", 600<<10) + `"}}]}`)
	case 3: // claims gzip, is not
		enc = "gzip"
		body = []byte(`{"batch":[]}`)
	default: // deep nesting
		body = []byte(`{"batch":[{"type":"track","event":"x","userId":"h1","properties":` +
			strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000) + `}]}`)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.targets()[0]+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return
	}
	hr.Header.Set("Authorization", auth)
	hr.Header.Set("Content-Type", "application/json")
	if enc != "" {
		hr.Header.Set("Content-Encoding", enc)
	}
	r.c.hostile.Add(1)
	resp, err := r.client.Do(hr)
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	r.c.hostileStatus[min(resp.StatusCode, 599)].Add(1)
}
