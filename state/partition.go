package state

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Moving a partition's serving state between stores (docs/format/snapshot.md).

// ErrRestorePending reports a partition whose range a restore (or drop)
// began to replace and did not finish: its keys are incomplete and it has
// no checkpoint. Import or Drop it before the sessionizer starts it.
var ErrRestorePending = errors.New("state: partition restore pending")

// Export writes partition p's key range, as one read transaction sees it,
// to w in the snapshot format, and returns the snapshot's header (its
// checkpoint is the one inside the range, so the snapshot is the state
// after exactly the messages up to Checkpoint.LastSeq). Expired keys are
// left out; the others keep their expiry. epoch is recorded in the header.
// A partition whose restore is pending is refused.
func (s *Store) Export(p int, epoch uint64, w io.Writer) (SnapshotInfo, error) {
	info := SnapshotInfo{Partition: p, Epoch: epoch, CreatedAt: time.Now().UnixMilli()}
	err := s.View(func(txn *badger.Txn) error {
		if pending, err := restorePending(txn, p); err != nil || pending {
			return errors.Join(err, pendingErr(pending))
		}
		var cp []byte
		if _, err := Get(txn, CheckpointKey(p), func(v []byte) error {
			cp = append([]byte(nil), v...)
			var err error
			info.Checkpoint, err = DecodeCheckpoint(v)
			return err
		}); err != nil {
			return fmt.Errorf("reading checkpoint: %w", err)
		}
		sw := newSnapWriter(w)
		sw.header(info, cp)
		if err := exportRange(txn, p, sw); err != nil {
			return err
		}
		info.Keys = sw.n
		return sw.end()
	})
	if err != nil {
		return info, fmt.Errorf("exporting partition %d: %w", p, err)
	}
	return info, nil
}

func pendingErr(pending bool) error {
	if pending {
		return ErrRestorePending
	}
	return nil
}

// exportRange writes every key of p but its checkpoint (in the header).
func exportRange(txn *badger.Txn, p int, sw *snapWriter) error {
	checkpoint := CheckpointKey(p)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: PartitionPrefix(p), PrefetchValues: true, PrefetchSize: 100})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if bytes.Equal(item.Key(), checkpoint) {
			continue
		}
		if err := item.Value(func(v []byte) error {
			sw.record(item.Key(), v, item.ExpiresAt(), item.UserMeta())
			return sw.err
		}); err != nil {
			return fmt.Errorf("writing key %x: %w", item.Key(), err)
		}
	}
	return nil
}

// Import replaces partition p's key range by the snapshot in r (size bytes)
// and returns the snapshot's header. It first reads the whole snapshot and
// checks its version, layout, partition, every key and its checksum: a
// snapshot that fails is refused with ErrBadSnapshot and the store is left
// untouched. Then, in this order, each step durable before the next: it
// marks p's restore pending and deletes p's checkpoint (one transaction),
// deletes p's keys, loads the snapshot's keys, and writes the snapshot's
// checkpoint while clearing the mark (one transaction). Stopped anywhere
// in between (an error, a crash) the partition has no checkpoint and
// reports ErrRestorePending until an Import or Drop completes.
//
// Nothing may write partition p meanwhile: call it before the sessionizer
// starts p. Other partitions are untouched and may be written throughout.
func (s *Store) Import(p int, r io.ReaderAt, size int64) (SnapshotInfo, error) {
	info, cp, err := readSnapshot(io.NewSectionReader(r, 0, size), p, false, nil)
	if err != nil {
		return info, fmt.Errorf("importing partition %d: verifying snapshot: %w", p, err)
	}
	if err := s.replaceRange(p, cp, func(wb *badger.WriteBatch) error {
		_, _, err := readSnapshot(io.NewSectionReader(r, 0, size), p, true, func(rec snapRecord) error {
			e := badger.NewEntry(rec.key, rec.value).WithMeta(rec.meta)
			e.ExpiresAt = rec.expiresAt
			return wb.SetEntry(e)
		})
		return err
	}); err != nil {
		return info, fmt.Errorf("importing partition %d: %w", p, err)
	}
	return info, nil
}

// Drop deletes partition p's whole range, checkpoint included, with the
// same pending mark as Import: the sessionizer then replays p from the
// stream's start.
func (s *Store) Drop(p int) error {
	if err := s.replaceRange(p, nil, func(*badger.WriteBatch) error { return nil }); err != nil {
		return fmt.Errorf("dropping partition %d: %w", p, err)
	}
	return nil
}

// replaceRange marks p pending, deletes its range, calls load and writes
// checkpoint cp (none when nil) while clearing the mark. It logs how long
// each step took.
func (s *Store) replaceRange(p int, cp []byte, load func(*badger.WriteBatch) error) error {
	if s.db.IsClosed() {
		return ErrClosed
	}
	t0 := time.Now()
	if err := s.db.Update(func(txn *badger.Txn) error {
		return errors.Join(txn.Set(RestoreKey(p), []byte{1}), txn.Delete(CheckpointKey(p)))
	}); err != nil {
		return fmt.Errorf("marking the restore: %w", err)
	}
	deleted, err := s.deleteRange(p)
	if err != nil {
		return fmt.Errorf("deleting the range: %w", err)
	}
	t1 := time.Now()
	if err := s.loadRange(load); err != nil {
		return fmt.Errorf("loading: %w", err)
	}
	t2 := time.Now()
	err = s.db.Update(func(txn *badger.Txn) error {
		if cp != nil {
			if err := txn.Set(CheckpointKey(p), cp); err != nil {
				return err
			}
		}
		return txn.Delete(RestoreKey(p))
	})
	if err != nil {
		return fmt.Errorf("committing the checkpoint: %w", err)
	}
	s.log.Info("partition range replaced", "partition", p, "deleted_keys", deleted, "delete", t1.Sub(t0),
		"load", t2.Sub(t1), "commit", time.Since(t2))
	return nil
}

func (s *Store) loadRange(load func(*badger.WriteBatch) error) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	if err := load(wb); err != nil {
		return err
	}
	return wb.Flush()
}

// deleteRange deletes every key of partition p and says how many.
func (s *Store) deleteRange(p int) (int, error) {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: PartitionPrefix(p)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := wb.Delete(it.Item().KeyCopy(nil)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, wb.Flush()
}

// Position returns partition p's checkpoint (zero when absent), or
// ErrRestorePending.
func (s *Store) Position(p int) (Checkpoint, error) {
	var cp Checkpoint
	err := s.View(func(txn *badger.Txn) error {
		pending, err := restorePending(txn, p)
		if err != nil || pending {
			return errors.Join(err, pendingErr(pending))
		}
		cp, err = ReadCheckpoint(txn, p)
		return err
	})
	if err != nil {
		return cp, fmt.Errorf("reading the position of partition %d: %w", p, err)
	}
	return cp, nil
}

func restorePending(txn *badger.Txn, p int) (bool, error) {
	found, err := Get(txn, RestoreKey(p), func([]byte) error { return nil })
	if err != nil {
		return false, fmt.Errorf("reading the restore mark of partition %d: %w", p, err)
	}
	return found, nil
}
