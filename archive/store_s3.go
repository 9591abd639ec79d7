package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Store keeps objects in a bucket of an S3-compatible store under a key
// prefix. A single PutObject is all-or-nothing on S3.
type S3Store struct {
	c      *minio.Client
	bucket string
	prefix string
}

func openS3(ctx context.Context, cfg S3Config, bucket, prefix string) (*S3Store, error) {
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	creds := credentials.NewEnvAWS()
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else if os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("AWS_ACCESS_KEY") == "" {
		return nil, fmt.Errorf("archive.s3.access_key: empty and AWS_ACCESS_KEY_ID not set")
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(endpoint, &minio.Options{
		Creds: creds, Secure: cfg.Secure, Region: cfg.Region, BucketLookup: lookup,
		Transport: s3Transport(cfg.Timeout),
		// The archiver retries forever with its own backoff; one quick
		// internal retry covers a dropped keep-alive connection.
		MaxRetries: 2,
	})
	if err != nil {
		return nil, fmt.Errorf("archive.s3.endpoint: %w", err)
	}
	s := &S3Store{c: c, bucket: bucket, prefix: strings.Trim(prefix, "/")}
	if s.prefix != "" {
		s.prefix += "/"
	}
	if err := s.checkBucket(ctx, cfg); err != nil {
		if errors.Is(err, ErrUnreachable) {
			return s, err
		}
		return nil, err
	}
	return s, nil
}

func s3Transport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
	}
}

func (s *S3Store) checkBucket(ctx context.Context, cfg S3Config) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "" {
			// No S3 answer at all: the store is down, not misconfigured.
			err = fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return fmt.Errorf("checking bucket %q at %s: %w", s.bucket, s.c.EndpointURL().Host, err)
	}
	if ok {
		return nil
	}
	if !cfg.CreateBucket {
		return fmt.Errorf("archive.url: bucket %q does not exist at %s (create it, or set archive.s3.create_bucket)",
			s.bucket, s.c.EndpointURL().Host)
	}
	if err := s.c.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
		return fmt.Errorf("creating bucket %q: %w", s.bucket, err)
	}
	return nil
}

// Put uploads data in one PUT.
func (s *S3Store) Put(ctx context.Context, key string, data []byte) error {
	_, err := s.c.PutObject(ctx, s.bucket, s.prefix+key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: contentType(key), DisableMultipart: true, SendContentMd5: true})
	if err != nil {
		return fmt.Errorf("putting s3://%s/%s%s: %w", s.bucket, s.prefix, key, err)
	}
	return nil
}

// Get downloads key; ErrNotFound when absent.
func (s *S3Store) Get(ctx context.Context, key string) ([]byte, error) {
	o, err := s.c.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("getting %s: %w", key, err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, fmt.Errorf("getting %s: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("getting %s: %w", key, err)
	}
	return b, nil
}

// Delete removes key.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	if err := s.c.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	return nil
}

// Copy copies src to dst inside the bucket, server-side.
func (s *S3Store) Copy(ctx context.Context, src, dst string) error {
	_, err := s.c.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: s.bucket, Object: s.prefix + dst},
		minio.CopySrcOptions{Bucket: s.bucket, Object: s.prefix + src})
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return fmt.Errorf("copying %s: %w", src, ErrNotFound)
		}
		return fmt.Errorf("copying s3://%s/%s%s: %w", s.bucket, s.prefix, src, err)
	}
	return nil
}

// List returns the keys under prefix, relative to the store prefix.
func (s *S3Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	for o := range s.c.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("listing %s: %w", prefix, o.Err)
		}
		keys = append(keys, strings.TrimPrefix(o.Key, s.prefix))
	}
	return keys, nil
}

func contentType(key string) string {
	if strings.HasSuffix(key, ".json") {
		return "application/json"
	}
	return "application/vnd.apache.parquet"
}
