package buffer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

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

// bucketConfigs are the key-value buckets clickpipe keeps, replicated like
// the streams (R3 when clustered). Their consumers (the registry's KV
// watches) are ordered, ephemeral ones.
func (b *Buffer) bucketConfigs() []jetstream.KeyValueConfig {
	replicas := b.replicas()
	return []jetstream.KeyValueConfig{
		{Bucket: RegulationsBucket, Description: "clickpipe regulations (delete / suppress requests) and their progress",
			History: 1, MaxBytes: bucketBytes, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: RegulatedUsersBucket, Description: "clickpipe suppressed and erased user ids",
			History: 1, MaxBytes: bucketBytes, Storage: jetstream.FileStorage, Replicas: replicas},
	}
}

// ensureBuckets binds or creates the key-value buckets. In a cluster every
// node does so at start, possibly at the same moment, and the meta leader
// can leave one of several concurrent creates unanswered: each attempt is
// bounded and retried until ctx ends.
func (b *Buffer) ensureBuckets(ctx context.Context) error {
	if b.cfg.Cluster.Enabled {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.Cluster.JoinTimeout)
		defer cancel()
	}
	for _, want := range b.bucketConfigs() {
		for attempt := 1; ; attempt++ {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := b.js.KeyValue(actx, want.Bucket)
			created := false
			if errors.Is(err, jetstream.ErrBucketNotFound) {
				_, err = b.js.CreateKeyValue(actx, want)
				created = err == nil
			} else if err == nil {
				err = b.matchBucketReplicas(actx, want)
			}
			cancel()
			if created {
				b.log.Info("created bucket", "bucket", want.Bucket, "replicas", want.Replicas)
			}
			if err == nil {
				break
			}
			if ctx.Err() != nil || !b.cfg.Cluster.Enabled {
				return fmt.Errorf("bucket %s: %w", want.Bucket, err)
			}
			b.log.Info("waiting for bucket", "bucket", want.Bucket, "attempt", attempt, "err", err)
			select {
			case <-ctx.Done():
				return fmt.Errorf("bucket %s: %w", want.Bucket, err)
			case <-time.After(time.Duration(250+rand.IntN(500)) * time.Millisecond):
			}
		}
	}
	return nil
}

// matchBucketReplicas raises (or lowers) an existing bucket's replication
// to want's: buckets an earlier build created R1 in a cluster become R3
// like the streams, instead of staying bound to one node's disk.
func (b *Buffer) matchBucketReplicas(ctx context.Context, want jetstream.KeyValueConfig) error {
	s, err := b.js.Stream(ctx, "KV_"+want.Bucket)
	if err != nil {
		return fmt.Errorf("looking up the stream of bucket %s: %w", want.Bucket, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading the stream of bucket %s: %w", want.Bucket, err)
	}
	if info.Config.Replicas == want.Replicas {
		return nil
	}
	upd := info.Config
	upd.Replicas = want.Replicas
	if _, err := b.js.UpdateStream(ctx, upd); err != nil {
		return fmt.Errorf("updating the replicas of bucket %s: %w", want.Bucket, err)
	}
	b.log.Warn("updated bucket replicas to match configuration", "bucket", want.Bucket,
		"replicas_was", info.Config.Replicas, "replicas", want.Replicas)
	return nil
}

// KeyValue opens one of the buckets of bucketConfigs.
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
