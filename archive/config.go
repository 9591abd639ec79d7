// Package archive writes the data lake: every accepted event, closed session
// and failed item as Parquet objects (zstd) under Hive-style partitions, in a
// local directory or an S3-compatible bucket. Each table is consumed from its
// buffer stream by one durable consumer; a flush covers a contiguous range of
// stream sequences, writes one object per partition with a key derived from
// that range, then a manifest that commits the range, and only then acks the
// messages. docs/format/lake.md is the spec.
package archive

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Config is the archive section of the configuration.
type Config struct {
	// Enabled turns the archive consumers on.
	Enabled bool `mapstructure:"enabled"`
	// URL is file://DIR (relative paths allowed) or s3://bucket/prefix.
	URL string `mapstructure:"url"`
	// FlushInterval bounds how long a range stays open.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// FlushBytes bounds the buffered event JSON of an open range; Parquet
	// objects come out several times smaller.
	FlushBytes int64 `mapstructure:"flush_bytes"`
	// MaxPending bounds the messages held unacknowledged in an open range.
	// The buffer consumer's MaxAckPending must be at least this.
	MaxPending int `mapstructure:"max_pending"`
	// AckWait is the buffer consumer's ack deadline; held messages are
	// marked in progress well before it.
	AckWait time.Duration `mapstructure:"ack_wait"`
	// FetchBatch is the number of messages asked for per fetch.
	FetchBatch int `mapstructure:"fetch_batch"`
	// RowGroupRows bounds the rows of one Parquet row group.
	RowGroupRows int64 `mapstructure:"row_group_rows"`
	// RetryMin and RetryMax bound the exponential backoff of failed
	// uploads, which are retried forever.
	RetryMin time.Duration `mapstructure:"retry_min"`
	RetryMax time.Duration `mapstructure:"retry_max"`
	// StallAfter turns readiness false, naming the table, when a table
	// has had messages waiting this long without committing any (an
	// object store outage, a stuck item); 0 disables the check. Keep it
	// well above flush_interval: while it reports, load balancers stop
	// sending ingest traffic although the buffer could absorb it.
	StallAfter time.Duration `mapstructure:"stall_after"`
	// EraseInterval is how often a table applies the deletion requests
	// that arrived since its last pass (docs/privacy.md): each pass reads
	// every committed object once, so requests are batched; new ranges
	// leave erased users out at once regardless.
	EraseInterval time.Duration `mapstructure:"erase_interval"`
	// S3 configures s3:// URLs.
	S3 S3Config `mapstructure:"s3"`
}

// S3Config is the connection to an S3-compatible store.
type S3Config struct {
	// Endpoint is host[:port]; empty means s3.amazonaws.com.
	Endpoint string `mapstructure:"endpoint"`
	Region   string `mapstructure:"region"`
	// AccessKey and SecretKey; when empty AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY are used.
	AccessKey string `mapstructure:"access_key"`
	SecretKey string `mapstructure:"secret_key" secret:"true"`
	// Secure selects https.
	Secure bool `mapstructure:"secure"`
	// PathStyle selects path-style addressing (most self-hosted stores).
	PathStyle bool `mapstructure:"path_style"`
	// CreateBucket creates a missing bucket at start-up instead of failing.
	CreateBucket bool `mapstructure:"create_bucket"`
	// Timeout bounds one request.
	Timeout time.Duration `mapstructure:"timeout"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Enabled:       true,
		URL:           "file://./data/lake",
		FlushInterval: 60 * time.Second,
		FlushBytes:    128 << 20,
		MaxPending:    1000,
		AckWait:       30 * time.Second,
		FetchBatch:    256,
		RowGroupRows:  128 * 1024,
		RetryMin:      500 * time.Millisecond,
		RetryMax:      30 * time.Second,
		StallAfter:    15 * time.Minute,
		EraseInterval: 5 * time.Minute,
		S3:            S3Config{Region: "us-east-1", Secure: true, Timeout: 60 * time.Second},
	}
}

// Validate checks every key and names the offending ones.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := parseURL(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("archive.url: %w", err))
	}
	if c.FlushInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("archive.flush_interval: %s is below 100ms", c.FlushInterval))
	}
	if c.FlushBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("archive.flush_bytes: %d is below 1KiB", c.FlushBytes))
	}
	if c.MaxPending < 1 {
		errs = append(errs, fmt.Errorf("archive.max_pending: %d must be positive", c.MaxPending))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("archive.ack_wait: %s is below 1s", c.AckWait))
	}
	if c.FetchBatch < 1 {
		errs = append(errs, fmt.Errorf("archive.fetch_batch: %d must be positive", c.FetchBatch))
	}
	if c.RowGroupRows < 1 {
		errs = append(errs, fmt.Errorf("archive.row_group_rows: %d must be positive", c.RowGroupRows))
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("archive.retry_min, archive.retry_max: want 0 < %s <= %s", c.RetryMin, c.RetryMax))
	}
	if c.EraseInterval <= 0 {
		errs = append(errs, fmt.Errorf("archive.erase_interval: must be positive, got %s", c.EraseInterval))
	}
	if c.StallAfter < 0 {
		errs = append(errs, fmt.Errorf("archive.stall_after: %s must not be negative (0 = off)", c.StallAfter))
	}
	if c.S3.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("archive.s3.timeout: %s must be positive", c.S3.Timeout))
	}
	return errors.Join(errs...)
}

// ErrURLCredentials refuses user-info in archive.url: it would be printed
// by `clickpipe check` and in logs, and it is not how credentials are read.
var ErrURLCredentials = errors.New("credentials in the URL are refused (and not printed); " +
	"set archive.s3.access_key and archive.s3.secret_key (or CLICKPIPE_ARCHIVE_S3_ACCESS_KEY / CLICKPIPE_ARCHIVE_S3_SECRET_KEY, " +
	"or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")

// parseURL splits an archive URL into scheme ("file" or "s3") and the rest:
// the directory for file, "bucket/prefix" for s3.
func parseURL(raw string) (scheme, rest string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, which may hold credentials.
		return "", "", errors.New("not a valid URL")
	}
	if u.User != nil {
		return "", "", ErrURLCredentials
	}
	switch u.Scheme {
	case "file":
		dir := u.Host + u.Path // file://./data/lake has Host "." and Path "/data/lake"
		if u.Host == "." || u.Host == ".." {
			dir = u.Host + u.Path
		} else if u.Host != "" {
			return "", "", fmt.Errorf("%q: file URLs take a path, not a host (file:///abs or file://./rel)", raw)
		}
		if dir == "" {
			return "", "", fmt.Errorf("%q: empty directory", raw)
		}
		return "file", dir, nil
	case "s3":
		if u.Host == "" {
			return "", "", fmt.Errorf("%q: missing bucket", raw)
		}
		return "s3", u.Host + u.Path, nil
	default:
		return "", "", fmt.Errorf("%q: scheme must be file or s3", raw)
	}
}
