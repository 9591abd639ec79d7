package buffer

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Key-value buckets (docs/format/buffer.md). The buffer owns every
// JetStream object, so it creates them; their users (regulation) read and
// write them through KeyValue.
const (
	// RegulationsBucket holds one JSON record per regulation id.
	RegulationsBucket = "REGULATIONS"
	// RegulatedUsersBucket holds the suppress/erase status of each
	// regulated user id (key: the id in unpadded base64url).
	RegulatedUsersBucket = "REGULATED_USERS"
	// bucketBytes is each bucket's budget, reserved on top of the streams'.
	bucketBytes = 32 << 20
)

// BucketConfigs are the key-value buckets clickpipe keeps.
func BucketConfigs() []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: RegulationsBucket, Description: "clickpipe regulations (delete / suppress requests) and their progress",
			History: 1, MaxBytes: bucketBytes, Storage: jetstream.FileStorage, Replicas: 1},
		{Bucket: RegulatedUsersBucket, Description: "clickpipe suppressed and erased user ids",
			History: 1, MaxBytes: bucketBytes, Storage: jetstream.FileStorage, Replicas: 1},
	}
}

// ensureBuckets creates the key-value buckets that do not exist yet.
func (b *Buffer) ensureBuckets(ctx context.Context) error {
	for _, want := range BucketConfigs() {
		_, err := b.js.KeyValue(ctx, want.Bucket)
		if err == nil {
			continue
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("bucket %s: looking up: %w", want.Bucket, err)
		}
		if _, err := b.js.CreateKeyValue(ctx, want); err != nil {
			return fmt.Errorf("bucket %s: creating: %w", want.Bucket, err)
		}
		b.log.Info("created bucket", "bucket", want.Bucket)
	}
	return nil
}

// KeyValue opens one of the buckets of BucketConfigs.
func (b *Buffer) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	js, err := b.client()
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", bucket, err)
	}
	return kv, nil
}
