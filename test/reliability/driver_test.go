package reliability

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// driver posts Segment batches like analytics-node: fixed messageIds per
// batch, retried with the same ids until acknowledged (SDKs retry 5xx and
// connection errors). Every acknowledged id goes to the witness file,
// fsynced before it counts.
type driver struct {
	writeKey string
	addr     atomic.Pointer[string]
	client   *http.Client

	mu      sync.Mutex
	sent    map[string]bool // every id ever put on the wire
	acked   map[string]bool
	witness *os.File
	status  map[int]int
	errs    int
	// dropped counts requests that reached the server and got no answer
	// (connection reset or EOF mid-request), as opposed to refused
	// connections while the node was down.
	dropped           int
	retryAfterMissing int
}

func newDriver(writeKey, witnessPath string) (*driver, error) {
	f, err := os.OpenFile(witnessPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &driver{
		writeKey: writeKey, witness: f,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		sent:   map[string]bool{}, acked: map[string]bool{}, status: map[int]int{},
	}, nil
}

func (d *driver) setAddr(a string) { d.addr.Store(&a) }

// batch builds a batch of n events for one user with deterministic ids.
func batch(worker, seq, n int) ([]string, []byte) {
	ids := make([]string, n)
	items := make([]map[string]any, n)
	user := fmt.Sprintf("user-%d-%d", worker, seq%7)
	now := time.Now().UTC()
	for i := range n {
		ids[i] = fmt.Sprintf("w%d-b%d-e%d", worker, seq, i)
		items[i] = map[string]any{
			"type": "track", "event": "Video Content Playing", "messageId": ids[i], "userId": user,
			"timestamp":  now.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano),
			"properties": map[string]any{"content_asset_id": fmt.Sprintf("title-%d", seq%5), "position": seq*10 + i, "total_length": 3600},
		}
	}
	body, _ := json.Marshal(map[string]any{"batch": items, "sentAt": now.Format(time.RFC3339Nano)})
	return ids, body
}

// run sends batches from workers until ctx ends. Each batch is retried
// until acknowledged or ctx ends.
func (d *driver) run(ctx context.Context, workers, perBatch int) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ctx.Err() == nil; seq++ {
				ids, body := batch(w, seq, perBatch)
				for ctx.Err() == nil {
					if d.post(ctx, ids, body) {
						break
					}
					select {
					case <-ctx.Done():
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		}()
	}
	wg.Wait()
}

func (d *driver) post(ctx context.Context, ids []string, body []byte) bool {
	addr := d.addr.Load()
	if addr == nil {
		return false
	}
	d.mu.Lock()
	for _, id := range ids {
		d.sent[id] = true
	}
	d.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+*addr+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	// Lets net/http retry a request that raced with the server closing an
	// idle keep-alive connection (nothing was processed then).
	req.Header.Set("X-Idempotency-Key", ids[0])
	var reused atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused.Store(i.Reused) },
	}))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(d.writeKey+":")))
	resp, err := d.client.Do(req)
	if err != nil {
		d.mu.Lock()
		d.errs++
		// A fresh connection reset before any answer was never accepted
		// (it sat in the listen backlog when the listener closed).
		if !refused(err) && ctx.Err() == nil && reused.Load() {
			d.dropped++
		}
		d.mu.Unlock()
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status[resp.StatusCode]++
	if (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests) &&
		resp.Header.Get("Retry-After") == "" {
		d.retryAfterMissing++
	}
	if resp.StatusCode != http.StatusOK {
		return false
	}
	var buf bytes.Buffer
	for _, id := range ids {
		d.acked[id] = true
		buf.WriteString(id + "\n")
	}
	_, _ = d.witness.Write(buf.Bytes())
	_ = d.witness.Sync()
	return true
}

func (d *driver) snapshot() (sent, acked map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sent, acked = make(map[string]bool, len(d.sent)), make(map[string]bool, len(d.acked))
	for k := range d.sent {
		sent[k] = true
	}
	for k := range d.acked {
		acked[k] = true
	}
	return sent, acked
}

// refused reports a connection that never reached a serving node: the
// node was down or closing its listener. The SDKs retry these.
func refused(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "server closed idle connection")
}

func (d *driver) counts() (status map[int]int, errs, dropped, retryAfterMissing int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	status = map[int]int{}
	for k, v := range d.status {
		status[k] = v
	}
	return status, d.errs, d.dropped, d.retryAfterMissing
}
