package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// probe measures click -> queryable from outside, as a client would:
// every second it posts one event for a fresh probe user (a wall-clock
// timestamp) and polls that user's sessions until the event shows,
// recording the time from the request to the first answer that has it.
func probe(ctx context.Context, srv *server, stop <-chan struct{}) (lat []float64, misses int) {
	client := &http.Client{Timeout: 5 * time.Second}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return lat, misses
		case <-ctx.Done():
			return lat, misses
		case <-t.C:
		}
		user := fmt.Sprintf("probe-%d-%d", time.Now().UnixNano(), i)
		body := fmt.Sprintf(`{"userId":%q,"type":"track","event":"Title Clicked","messageId":%q,"timestamp":%q}`,
			user, user, time.Now().UTC().Format(time.RFC3339Nano))
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+srv.ingest+"/v1/track", strings.NewReader(body))
		req.SetBasicAuth(srv.writeKey, "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			misses++
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			misses++
			continue
		}
		if d, ok := pollUntilSeen(ctx, client, srv, user, start); ok {
			lat = append(lat, d.Seconds()*1000)
		} else {
			misses++
		}
	}
}

func pollUntilSeen(ctx context.Context, client *http.Client, srv *server, user string, start time.Time) (time.Duration, bool) {
	for time.Since(start) < 30*time.Second && ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+srv.query+"/v1/users/"+user+"/sessions", nil)
		req.Header.Set("Authorization", "Bearer "+srv.token)
		resp, err := client.Do(req)
		if err == nil {
			var v struct {
				Sessions []struct{ Events int } `json:"sessions"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if len(v.Sessions) > 0 && v.Sessions[0].Events > 0 {
				return time.Since(start), true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, false
}
