package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clickpipe/clickpipe/event"
)

// tailFlags are the options of `clickpipe tail`.
type tailFlags struct {
	url, token, source, userID, dataDir string
	json                                bool
}

// newTailCmd prints live events from a running server, one line each.
func newTailCmd() *cobra.Command {
	f := &tailFlags{}
	c := &cobra.Command{
		Use:   "tail",
		Short: "Print events live as a running clickpipe accepts them",
		Long: `tail connects to GET /v1/events/live on the query listener and prints one line per
acknowledged event, like Segment's debugger. The token is --token, else
$CLICKPIPE_QUERY_TOKEN, else the development token a local serve keeps in
<data dir>/dev-query-token.

Examples:
  clickpipe tail                                   # local serve, development token
  clickpipe tail --user-id u1 --json               # one user's events as JSON lines
  clickpipe tail --url http://10.0.0.5:8081 --token "$TOKEN" --source web`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f.token = firstNonEmpty(f.token, os.Getenv("CLICKPIPE_QUERY_TOKEN"), devCredential(f.dataDir, "dev-query-token"))
			return runTail(c.Context(), f, c.OutOrStdout())
		},
	}
	c.Flags().StringVar(&f.url, "url", "http://127.0.0.1:8081", "query listener base URL")
	c.Flags().StringVar(&f.token, "token", "", "query API bearer token (default $CLICKPIPE_QUERY_TOKEN)")
	c.Flags().StringVar(&f.source, "source", "", "only events of this source")
	c.Flags().StringVar(&f.userID, "user-id", "", "only events of this userId")
	c.Flags().BoolVar(&f.json, "json", false, "print each event as its JSON line")
	c.Flags().StringVar(&f.dataDir, "data-dir", defaultDataDir(), "where a local serve keeps its development token (default $CLICKPIPE_DATA_DIR or ./data)")
	return c
}

func runTail(ctx context.Context, f *tailFlags, out io.Writer) error {
	q := url.Values{}
	if f.source != "" {
		q.Set("source", f.source)
	}
	if f.userID != "" {
		q.Set("user_id", f.userID)
	}
	u := strings.TrimSuffix(f.url, "/") + "/v1/events/live"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("tail: connecting to %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("tail: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if err := printTailLine(out, data, f.json); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return fmt.Errorf("tail: reading stream: %w", err)
	}
	return nil
}

// printTailLine prints one event: raw JSON, or a readable summary.
func printTailLine(out io.Writer, data string, raw bool) error {
	if raw {
		_, err := fmt.Fprintln(out, data)
		return err
	}
	var ev event.Event
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		_, err = fmt.Fprintln(out, data)
		return err
	}
	what := ev.Event
	if what == "" {
		what = ev.Name
	}
	who := "user=" + ev.UserID
	if ev.UserID == "" {
		who = "anon=" + ev.AnonymousID
	}
	line := fmt.Sprintf("%s %-8s %-9s %-30q %s msg=%s", ev.Timestamp.UTC().Format(time.RFC3339Nano), ev.Source, ev.Type, what, who, ev.MessageID)
	if ev.Bot {
		line += " bot"
	}
	_, err := fmt.Fprintln(out, line)
	return err
}
