package snapshot

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Objects is the object store snapshots live in; archive.ObjectStore
// satisfies it. Put must be all-or-nothing (a reader never sees part of
// an object) and List lexically ordered.
//
// Put and Get take whole objects: a snapshot is held in memory once while
// it is written or restored (its size is clickpipe_snapshot_size_bytes).
// A streaming Put/Get on the store would remove that; see
// docs/format/snapshot.md, "Limits".
type Objects interface {
	Put(ctx context.Context, key string, data []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, key string) error
}

// Prefix is where snapshots live in the object store.
const Prefix = "_snapshots/"

// Ref names one stored snapshot.
type Ref struct {
	Partition int
	// LastSeq is the checkpoint inside the snapshot.
	LastSeq uint64
	Key     string
}

// Key is the object key of partition p's snapshot at checkpoint lastSeq:
// _snapshots/p<p, 5 digits>/<lastSeq, 20 digits>.snap, so keys sort by
// checkpoint.
func Key(p int, lastSeq uint64) string {
	return fmt.Sprintf("%s%s%020d.snap", Prefix, partitionDir(p), lastSeq)
}

func partitionDir(p int) string { return fmt.Sprintf("p%05d/", p) }

// Store keeps partition snapshots in an object store.
type Store struct{ objs Objects }

// NewStore is a snapshot store over objs.
func NewStore(objs Objects) *Store { return &Store{objs: objs} }

// Put stores snapshot data of partition p at checkpoint lastSeq.
func (s *Store) Put(ctx context.Context, p int, lastSeq uint64, data []byte) (Ref, error) {
	ref := Ref{Partition: p, LastSeq: lastSeq, Key: Key(p, lastSeq)}
	if err := s.objs.Put(ctx, ref.Key, data); err != nil {
		return ref, fmt.Errorf("storing snapshot of partition %d: %w", p, err)
	}
	return ref, nil
}

// Get reads a stored snapshot.
func (s *Store) Get(ctx context.Context, ref Ref) ([]byte, error) {
	data, err := s.objs.Get(ctx, ref.Key)
	if err != nil {
		return nil, fmt.Errorf("reading snapshot of partition %d: %w", ref.Partition, err)
	}
	return data, nil
}

// List returns partition p's snapshots, oldest checkpoint first. Objects
// under the partition's prefix that are not snapshots are ignored.
func (s *Store) List(ctx context.Context, p int) ([]Ref, error) {
	prefix := Prefix + partitionDir(p)
	keys, err := s.objs.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("listing snapshots of partition %d: %w", p, err)
	}
	refs := make([]Ref, 0, len(keys))
	for _, k := range keys {
		name, ok := strings.CutSuffix(strings.TrimPrefix(k, prefix), ".snap")
		seq, err := strconv.ParseUint(name, 10, 64)
		if !ok || err != nil || len(name) != 20 {
			continue
		}
		refs = append(refs, Ref{Partition: p, LastSeq: seq, Key: k})
	}
	return refs, nil
}

// Latest is partition p's snapshot with the highest checkpoint; ok is
// false when there is none.
func (s *Store) Latest(ctx context.Context, p int) (ref Ref, ok bool, err error) {
	refs, err := s.List(ctx, p)
	if err != nil || len(refs) == 0 {
		return Ref{}, false, err
	}
	return refs[len(refs)-1], true, nil
}

// Prune deletes all but the keep newest snapshots of partition p and says
// how many it deleted.
func (s *Store) Prune(ctx context.Context, p, keep int) (int, error) {
	refs, err := s.List(ctx, p)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range refs[:max(0, len(refs)-keep)] {
		if err := s.objs.Delete(ctx, r.Key); err != nil {
			return n, fmt.Errorf("pruning snapshots of partition %d: %w", p, err)
		}
		n++
	}
	return n, nil
}
