// Package ingest is the Segment-compatible tracking API: it authenticates
// write keys, decodes and validates Segment payloads, enriches them into
// event.Event, packs the events of concurrent requests into group-commit
// messages per partition and answers 200 only once every message holding a
// request's events is acknowledged by the buffer.
package ingest

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// Source maps a write key to a named source.
type Source struct {
	Name     string `mapstructure:"name"`
	WriteKey string `mapstructure:"write_key" secret:"true"`
}

// Bot policies.
const (
	BotFlag = "flag"
	BotDrop = "drop"
)

// Config is the ingest section of the configuration.
type Config struct {
	// Listen is the tracking API address.
	Listen string `mapstructure:"listen"`
	// PublicURL is how clients reach the tracking API (for example
	// https://track.example.com); the analytics.js settings document
	// points apiHost at it. Empty: the request's Host, with Vary: Host.
	PublicURL string `mapstructure:"public_url"`
	// Sources are the accepted write keys.
	Sources []Source `mapstructure:"sources"`
	// MaxConnections bounds simultaneous client connections.
	MaxConnections int `mapstructure:"max_connections"`
	// HealthReserve of MaxConnections serve only /healthz and /readyz, so
	// that probes are answered while clients hold every other connection.
	HealthReserve int `mapstructure:"health_reserve"`
	// MaxConnectionsPerIP bounds the connections of one peer address
	// (trusted proxies are exempt); past it a connection is closed at once.
	MaxConnectionsPerIP int `mapstructure:"max_connections_per_ip"`
	// MaxRequestsPerIP bounds the requests of one client address (behind
	// trusted proxies, the X-Forwarded-For client) in flight at once;
	// past it the answer is 429 + Retry-After.
	MaxRequestsPerIP int `mapstructure:"max_requests_per_ip"`
	// BodyTimeout is the time from the end of the headers by which the
	// whole body must have arrived; past it, or when the client closes
	// before Content-Length bytes, the answer is 408 and the connection
	// is closed.
	BodyTimeout time.Duration `mapstructure:"body_timeout"`
	// TrustedProxies are addresses or CIDR prefixes whose X-Forwarded-For
	// header is believed.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// AnonymizeIP zeroes the last octet (IPv4) or last 80 bits (IPv6).
	AnonymizeIP bool `mapstructure:"anonymize_ip"`
	// Bots is "flag" (keep, bot=true) or "drop" (count and discard).
	Bots string `mapstructure:"bots"`
	// RateLimit is the per-write-key budget in events per second; 0 is off.
	RateLimit float64 `mapstructure:"rate_limit"`
	// RateBurst is the per-write-key bucket size in events.
	RateBurst int `mapstructure:"rate_burst"`
	// MaxEventBytes, MaxBatchBytes and MaxBatchItems bound a request,
	// measured after decompression.
	MaxEventBytes int64 `mapstructure:"max_event_bytes"`
	MaxBatchBytes int64 `mapstructure:"max_batch_bytes"`
	MaxBatchItems int   `mapstructure:"max_batch_items"`
	// MaxIDBytes caps messageId, userId, anonymousId, previousId, groupId
	// and the asset ids of properties; MaxNameBytes caps event and
	// page/screen names. Independent of MaxEventBytes: these become parts
	// of serving-state keys.
	MaxIDBytes   int `mapstructure:"max_id_bytes"`
	MaxNameBytes int `mapstructure:"max_name_bytes"`
	// MaxDepth caps JSON nesting.
	MaxDepth int `mapstructure:"max_depth"`
	// SkewThreshold: clock-skew corrections smaller than this are not
	// applied, so transit delay does not reorder a device's events.
	SkewThreshold time.Duration `mapstructure:"skew_threshold"`
	// FutureLimit: corrected timestamps further than this ahead of
	// receivedAt are clamped to receivedAt.
	FutureLimit time.Duration `mapstructure:"future_limit"`
	// CommitMaxBytes bounds one group-commit message.
	CommitMaxBytes int64 `mapstructure:"commit_max_bytes"`
	// CommitLinger is how long an open group-commit message waits for more
	// events before it is published.
	CommitLinger time.Duration `mapstructure:"commit_linger"`
	// Publishers is the number of concurrent publishing goroutines.
	Publishers int `mapstructure:"publishers"`
	// PublishTimeout bounds one publish; past it the request gets 503.
	PublishTimeout time.Duration `mapstructure:"publish_timeout"`
	// RetryAfter is the Retry-After sent with 503 answers.
	RetryAfter time.Duration `mapstructure:"retry_after"`
	// LiveBuffer is the per-subscriber queue of the live-events stream;
	// a slower reader loses events (counted), never slows ingest.
	LiveBuffer int `mapstructure:"live_buffer"`
	// LiveBufferBytes bounds the bytes queued for one subscriber.
	LiveBufferBytes int64 `mapstructure:"live_buffer_bytes"`
	// LiveMaxSubscribers bounds simultaneous live-event subscribers; past
	// it /v1/events/live answers 503 + Retry-After.
	LiveMaxSubscribers int `mapstructure:"live_max_subscribers"`
}

// Bounds that keep every serving-state key (at most a prefix, the source
// name, one id and a few fixed bytes) under Badger's 65,000-byte key limit
// whatever the configuration.
const (
	MaxEventBytesLimit = 64000
	MaxIDBytesLimit    = 4096
	MaxSourceNameBytes = 256
)

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Listen:              ":8080",
		MaxConnections:      4096,
		HealthReserve:       16,
		MaxConnectionsPerIP: 256,
		MaxRequestsPerIP:    64,
		BodyTimeout:         10 * time.Second,
		Bots:                BotFlag,
		RateBurst:           0,
		MaxEventBytes:       32 << 10,
		MaxBatchBytes:       500 << 10,
		MaxBatchItems:       2500,
		MaxIDBytes:          256,
		MaxNameBytes:        256,
		MaxDepth:            64,
		SkewThreshold:       2 * time.Second,
		FutureLimit:         23 * time.Hour,
		CommitMaxBytes:      1 << 20,
		CommitLinger:        5 * time.Millisecond,
		Publishers:          4,
		PublishTimeout:      5 * time.Second,
		RetryAfter:          2 * time.Second,
		LiveBuffer:          1024,
		LiveBufferBytes:     4 << 20,
		LiveMaxSubscribers:  64,
	}
}

// Validate names the offending key.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("ingest.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if c.Listen == "" {
		add("listen", "must not be empty")
	}
	if _, _, err := c.publicHost(); err != nil {
		add("public_url", "%v", err)
	}
	seen := map[string]bool{}
	for i, s := range c.Sources {
		if s.Name == "" {
			add(fmt.Sprintf("sources[%d].name", i), "must not be empty")
		}
		if len(s.Name) > MaxSourceNameBytes || event.CheckID(s.Name, 0) != nil {
			add(fmt.Sprintf("sources[%d].name", i), "longer than %d bytes or holding a control character", MaxSourceNameBytes)
		}
		if len(s.WriteKey) < 8 {
			add(fmt.Sprintf("sources[%d].write_key", i), "shorter than 8 characters")
		}
		if seen[s.WriteKey] {
			add(fmt.Sprintf("sources[%d].write_key", i), "used by another source")
		}
		seen[s.WriteKey] = true
	}
	if c.MaxConnections < 0 {
		add("max_connections", "must not be negative")
	}
	if c.HealthReserve < 0 || (c.MaxConnections > 0 && c.HealthReserve >= c.MaxConnections) {
		add("health_reserve", "must be between 0 and max_connections - 1")
	}
	if c.MaxConnectionsPerIP < 0 {
		add("max_connections_per_ip", "must not be negative (0 = unlimited)")
	}
	if c.MaxRequestsPerIP < 0 {
		add("max_requests_per_ip", "must not be negative (0 = unlimited)")
	}
	if c.BodyTimeout < 100*time.Millisecond || c.BodyTimeout > 30*time.Second {
		add("body_timeout", "must be between 100ms and 30s (the server's read timeout)")
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		add("trusted_proxies", "%v", err)
	}
	if c.Bots != BotFlag && c.Bots != BotDrop {
		add("bots", "must be %q or %q, got %q", BotFlag, BotDrop, c.Bots)
	}
	if c.RateLimit < 0 {
		add("rate_limit", "must not be negative")
	}
	if c.RateLimit > 0 && c.RateBurst < 1 {
		add("rate_burst", "must be at least 1 when rate_limit is set")
	}
	if c.MaxEventBytes < 1024 || c.MaxEventBytes > MaxEventBytesLimit {
		// The upper bound keeps every key derived from an event (its ids
		// are shorter than the event) under Badger's 65,000-byte key limit.
		add("max_event_bytes", "must be between 1024 and %d", MaxEventBytesLimit)
	}
	if c.MaxIDBytes < 16 || c.MaxIDBytes > MaxIDBytesLimit {
		add("max_id_bytes", "must be between 16 and %d", MaxIDBytesLimit)
	}
	if c.MaxNameBytes < 16 || c.MaxNameBytes > MaxIDBytesLimit {
		add("max_name_bytes", "must be between 16 and %d", MaxIDBytesLimit)
	}
	if c.MaxBatchBytes < c.MaxEventBytes {
		add("max_batch_bytes", "must be at least max_event_bytes")
	}
	if c.MaxBatchItems < 1 {
		add("max_batch_items", "must be at least 1")
	}
	if c.MaxDepth < 4 {
		add("max_depth", "must be at least 4")
	}
	if c.SkewThreshold < 0 {
		add("skew_threshold", "must not be negative")
	}
	if c.FutureLimit <= 0 {
		add("future_limit", "must be positive")
	}
	if c.CommitMaxBytes < 2*c.MaxEventBytes {
		add("commit_max_bytes", "must be at least twice max_event_bytes")
	}
	if c.CommitLinger < 0 || c.CommitLinger > time.Second {
		add("commit_linger", "must be between 0 and 1s")
	}
	if c.Publishers < 1 {
		add("publishers", "must be at least 1")
	}
	if c.PublishTimeout <= 0 {
		add("publish_timeout", "must be positive")
	}
	if c.RetryAfter < time.Second {
		add("retry_after", "must be at least 1s")
	}
	if c.LiveBuffer < 1 {
		add("live_buffer", "must be at least 1")
	}
	if c.LiveBufferBytes < c.MaxEventBytes {
		add("live_buffer_bytes", "must be at least max_event_bytes")
	}
	if c.LiveMaxSubscribers < 1 {
		add("live_max_subscribers", "must be at least 1")
	}
	return errors.Join(errs...)
}

// publicHost returns the settings document's apiHost ("host[:port]/path/v1")
// and protocol from PublicURL; empty when PublicURL is.
func (c Config) publicHost() (apiHost, proto string, err error) {
	if c.PublicURL == "" {
		return "", "", nil
	}
	u, err := url.Parse(c.PublicURL)
	switch {
	case err != nil:
		return "", "", errors.New("not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", "", errors.New("scheme must be http or https")
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", "", errors.New("want scheme://host[:port][/path], without user, query or fragment")
	}
	return u.Host + strings.TrimSuffix(u.Path, "/") + "/v1", u.Scheme, nil
}

// parsePrefixes parses addresses and CIDR prefixes.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("parsing %q: %w", s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("parsing %q: %w", s, err)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
