package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// replayFlags are the options of `clickpipe failed replay`.
type replayFlags struct {
	query, ingest, token, writeKey, dataDir string
	reason, source, since, until            string
	dryRun                                  bool
	batch                                   int
}

func newFailedCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "failed",
		Short: "Work with stored failed events (items rejected inside valid requests)",
		Long: `failed works with the items ingest stored in the failed-events stream instead of
accepting them (no user id, too large, unknown type, ...), each with its reason and its
original bytes. The console's Failed events page shows the newest ones.

Examples:
  clickpipe failed replay --dry-run
  clickpipe failed replay --reason item_too_large --since 24h`,
	}
	c.AddCommand(newFailedReplayCmd())
	return c
}

func newFailedReplayCmd() *cobra.Command {
	f := &replayFlags{}
	c := &cobra.Command{
		Use:   "replay",
		Short: "Re-submit stored failed items through the tracking API after a fix or a config change",
		Long: `replay reads the stored failed items from a running server (GET /v1/failed on the query
listener), keeps those matching --reason, --source, --since and --until (receivedAt), and
sends their original bytes to the tracking API (/v1/batch) with --write-key, as an SDK
would. An item without a messageId gets one derived from where it is stored
(replay-<seq>-<index>), so replaying twice is counted once (messageId dedup). Items that
fail again are stored again; the summary counts them by reason.

The items must belong to the source of --write-key: with items of several sources, pass
--source and that source's key, once per source. The token and the write key default to
$CLICKPIPE_QUERY_TOKEN and $CLICKPIPE_WRITE_KEY, else the development ones in --data-dir.

Examples:
  clickpipe failed replay --dry-run
  clickpipe failed replay --reason item_too_large --since 24h     # after raising max_event_bytes
  clickpipe failed replay --source ios --write-key "$IOS_KEY" --since 2026-05-01T00:00:00Z`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f.token = firstNonEmpty(f.token, os.Getenv("CLICKPIPE_QUERY_TOKEN"), devCredential(f.dataDir, "dev-query-token"))
			f.writeKey = firstNonEmpty(f.writeKey, os.Getenv("CLICKPIPE_WRITE_KEY"), devCredential(f.dataDir, "dev-write-key"))
			sum, err := runReplay(c.Context(), f, c.ErrOrStderr(), time.Now())
			if sum != nil {
				sum.write(c.OutOrStdout(), f.dryRun)
			}
			return err
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.query, "url", "http://127.0.0.1:8081", "query listener base URL")
	fl.StringVar(&f.ingest, "target", "http://127.0.0.1:8080", "tracking API base URL")
	fl.StringVar(&f.token, "token", "", "query API bearer token (default $CLICKPIPE_QUERY_TOKEN, else <data-dir>/dev-query-token)")
	fl.StringVar(&f.writeKey, "write-key", "", "write key of the items' source (default $CLICKPIPE_WRITE_KEY, else <data-dir>/dev-write-key)")
	fl.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "where a local serve keeps its development credentials")
	fl.StringVar(&f.reason, "reason", "", "only items failed for this reason (e.g. item_too_large)")
	fl.StringVar(&f.source, "source", "", "only items of this source")
	fl.StringVar(&f.since, "since", "", "only items received at or after this time (RFC 3339, or a duration ago such as 24h)")
	fl.StringVar(&f.until, "until", "", "only items received before this time (RFC 3339, or a duration ago)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "list what would be re-submitted, send nothing")
	fl.IntVar(&f.batch, "batch", 100, "items per /v1/batch request")
	return c
}

// failedItem is the part of a stored event.Failed that replay reads.
type failedItem struct {
	Reason     string          `json:"reason"`
	Source     string          `json:"source"`
	MessageID  string          `json:"messageId"`
	ReceivedAt time.Time       `json:"receivedAt"`
	Raw        json.RawMessage `json:"raw"`
	RawText    string          `json:"rawText"`
}

type failedRecord struct {
	Seq   uint64     `json:"seq"`
	Index int        `json:"index"`
	Item  failedItem `json:"item"`
}

type failedPage struct {
	Items   []failedRecord `json:"items"`
	NextSeq uint64         `json:"next_seq"`
	LastSeq uint64         `json:"last_seq"`
}

// replaySummary is what replay reports.
type replaySummary struct {
	Matched       int            `json:"matched"`
	Skipped       map[string]int `json:"skipped"` // not JSON objects: cannot be re-sent
	Resubmitted   int            `json:"resubmitted"`
	Accepted      int            `json:"accepted"`
	FailedAgain   map[string]int `json:"failed_again"`
	ByReason      map[string]int `json:"matched_by_reason"`
	RequestErrors int            `json:"request_errors"`
}

func (s *replaySummary) write(w io.Writer, dry bool) {
	verb := "resubmitted"
	if dry {
		verb = "would resubmit"
	}
	fmt.Fprintf(w, "matched %d failed items (%s); %s %d", s.Matched, counts(s.ByReason), verb, s.Resubmitted)
	if !dry {
		fmt.Fprintf(w, ", accepted %d, failed again %d (%s)", s.Accepted, total(s.FailedAgain), counts(s.FailedAgain))
	}
	if n := total(s.Skipped); n > 0 {
		fmt.Fprintf(w, "; skipped %d (%s)", n, counts(s.Skipped))
	}
	fmt.Fprintln(w)
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + strconv.Itoa(m[k])
	}
	return strings.Join(parts, ", ")
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// parseWhen reads an RFC 3339 time or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	return now.Add(-d), nil
}

func runReplay(ctx context.Context, f *replayFlags, progress io.Writer, now time.Time) (*replaySummary, error) {
	since, err := parseWhen(f.since, now)
	if err != nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("--since: %w", err)}
	}
	until, err := parseWhen(f.until, now)
	if err != nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("--until: %w", err)}
	}
	keep := func(it failedItem) bool {
		return (f.reason == "" || it.Reason == f.reason) && (f.source == "" || it.Source == f.source) &&
			(since.IsZero() || !it.ReceivedAt.Before(since)) && (until.IsZero() || it.ReceivedAt.Before(until))
	}
	cl := &replayClient{f: f, http: &http.Client{Timeout: 30 * time.Second}}
	sum := &replaySummary{Skipped: map[string]int{}, FailedAgain: map[string]int{}, ByReason: map[string]int{}}
	var items []json.RawMessage
	sources := map[string]bool{}
	end, err := cl.each(ctx, 0, func(r failedRecord) {
		if !keep(r.Item) {
			return
		}
		sum.Matched++
		sum.ByReason[r.Item.Reason]++
		body, ok := replayBody(r)
		if !ok {
			sum.Skipped[r.Item.Reason]++
			return
		}
		sources[r.Item.Source] = true
		items = append(items, body)
	})
	if err != nil {
		return sum, err
	}
	if len(sources) > 1 {
		return sum, &exitError{code: 2, err: fmt.Errorf("the matching items come from %d sources: pass --source and that source's --write-key", len(sources))}
	}
	if f.dryRun {
		sum.Resubmitted = len(items)
		return sum, nil
	}
	for i := 0; i < len(items); i += f.batch {
		chunk := items[i:min(i+f.batch, len(items))]
		if err := cl.send(ctx, chunk); err != nil {
			sum.RequestErrors++
			return sum, fmt.Errorf("re-submitting items %d..%d: %w", i+1, i+len(chunk), err)
		}
		sum.Resubmitted += len(chunk)
		fmt.Fprintf(progress, "\rreplay: %d/%d resubmitted", sum.Resubmitted, len(items))
	}
	if len(items) > 0 {
		fmt.Fprintln(progress)
	}
	// Items that failed again are stored again after end; they keep the
	// messageId replay gave them.
	sent := map[string]bool{}
	for _, b := range items {
		var m struct {
			MessageID string `json:"messageId"`
		}
		_ = json.Unmarshal(b, &m)
		sent[m.MessageID] = true
	}
	if _, err := cl.each(ctx, end, func(r failedRecord) {
		if sent[r.Item.MessageID] {
			sum.FailedAgain[r.Item.Reason]++
		}
	}); err != nil {
		return sum, err
	}
	sum.Accepted = sum.Resubmitted - total(sum.FailedAgain)
	return sum, nil
}

// replayBody is the original item with a messageId, or false when the
// original bytes were not a JSON object.
func replayBody(r failedRecord) (json.RawMessage, bool) {
	var obj map[string]json.RawMessage
	if len(r.Item.Raw) == 0 || json.Unmarshal(r.Item.Raw, &obj) != nil {
		return nil, false
	}
	if id, ok := obj["messageId"]; !ok || string(id) == `""` || string(id) == "null" {
		obj["messageId"], _ = json.Marshal(fmt.Sprintf("replay-%d-%d", r.Seq, r.Index))
	}
	b, err := json.Marshal(obj)
	return b, err == nil
}

type replayClient struct {
	f    *replayFlags
	http *http.Client
}

// each calls fn for every stored failed item after sequence after, and
// returns the last sequence read.
func (c *replayClient) each(ctx context.Context, after uint64, fn func(failedRecord)) (uint64, error) {
	for {
		u := strings.TrimSuffix(c.f.query, "/") + "/v1/failed?" + url.Values{"after_seq": {strconv.FormatUint(after, 10)}, "limit": {"1000"}}.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return after, err
		}
		req.Header.Set("Authorization", "Bearer "+c.f.token)
		var page failedPage
		if err := c.do(req, &page); err != nil {
			return after, fmt.Errorf("listing failed items: %w", err)
		}
		for _, r := range page.Items {
			fn(r)
		}
		if page.NextSeq <= after || page.NextSeq >= page.LastSeq {
			return max(after, page.NextSeq), nil
		}
		after = page.NextSeq
	}
}

func (c *replayClient) send(ctx context.Context, items []json.RawMessage) error {
	body, err := json.Marshal(map[string]any{"batch": items})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.f.ingest, "/")+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.f.writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, nil)
}

func (c *replayClient) do(req *http.Request, v any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}
