package archive

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// A lake that glob readers can trust (docs/format/lake.md, "Staging and
// publication"): no object under a table's data prefix (events/, sessions/,
// failed/) is ever uncommitted. Objects are written under StagingPrefix
// first; the manifest commits them there; publication then copies each one
// to its key and deletes the staged copy. A staged object whose range has no
// manifest is the leftover of a flush that crashed before its commit and is
// deleted; one whose manifest exists is published again (idempotent: the
// same bytes to the same key).

// StagingPrefix holds objects written but not yet published.
const StagingPrefix = "_staging/"

// stagingKey is where the object with key waits for publication.
func stagingKey(key string) string { return StagingPrefix + key }

// ReadObject reads a committed object: at its key once published, at its
// staging key in the moment between the commit and the publication.
func ReadObject(ctx context.Context, st ObjectStore, key string) ([]byte, error) {
	data, _, err := readObjectAt(ctx, st, key)
	return data, err
}

// readObjectAt is ReadObject that also says where it found the object.
func readObjectAt(ctx context.Context, st ObjectStore, key string) ([]byte, string, error) {
	data, err := st.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		if staged, serr := st.Get(ctx, stagingKey(key)); serr == nil {
			return staged, stagingKey(key), nil
		}
	}
	return data, key, err
}

// publish makes the objects of committed manifest m visible under their
// keys. When m supersedes narrower manifests (a compaction), their objects
// of the same Hive partition are deleted first, so that a glob reader never
// sees both generations: for the moment between the delete and the copy it
// sees neither (docs/format/lake.md). The superseded manifests go last.
func publish(ctx context.Context, st ObjectStore, m Manifest, inner []Manifest, cp *crashpoints) error {
	for _, o := range m.Objects {
		if err := publishObject(ctx, st, o, inner, cp); err != nil {
			return err
		}
	}
	for _, old := range inner {
		for _, o := range old.Objects {
			if err := st.Delete(ctx, o.Key); err != nil { // partitions m no longer has
				return err
			}
		}
		if err := st.Delete(ctx, manifestKey(old.Table, old.FirstSeq, old.LastSeq)); err != nil {
			return err
		}
	}
	return nil
}

func publishObject(ctx context.Context, st ObjectStore, o Object, inner []Manifest, cp *crashpoints) error {
	for _, old := range inner {
		for _, x := range old.Objects {
			if x.Partition == o.Partition && x.Key != o.Key {
				if err := st.Delete(ctx, x.Key); err != nil {
					return err
				}
				cp.at("publish-after-delete")
			}
		}
	}
	err := st.Copy(ctx, stagingKey(o.Key), o.Key)
	if errors.Is(err, ErrNotFound) {
		return nil // published by an earlier attempt that stopped before the end
	}
	if err != nil {
		return fmt.Errorf("publishing %s: %w", o.Key, err)
	}
	cp.at("publish-after-copy")
	return st.Delete(ctx, stagingKey(o.Key))
}

// Reconciled reports what reconcile found.
type Reconciled struct {
	// Published counts staged objects of committed ranges it published.
	Published int
	// Discarded counts staged objects of uncommitted ranges it deleted.
	Discarded int
	// Compactions counts compactions past their commit point it finished.
	Compactions int
}

// reconcile finishes what a crashed process left of table: it publishes
// every committed range that still has staged objects, completes the
// clean-up of compactions past their commit point, and deletes staged
// objects that no manifest commits at or below the committed end. The
// archiver calls it before it consumes; compaction before it merges.
func reconcile(ctx context.Context, st ObjectStore, table string, cp *crashpoints) (Reconciled, error) {
	var res Reconciled
	l, err := LoadLedger(ctx, st, table)
	if err != nil {
		return res, err
	}
	staged, err := st.List(ctx, StagingPrefix+table+"/")
	if err != nil {
		return res, fmt.Errorf("reconciling %s: %w", table, err)
	}
	live := map[string]Range{}
	for _, r := range l.Ranges {
		live[rangeName(r.First, r.Last)] = r
	}
	done := map[string]bool{}
	for _, sk := range staged {
		name := objectRange(sk)
		r, ok := live[name]
		if !ok {
			// A range above the committed end may be a live archiver's
			// flush between its upload and its commit (compaction runs
			// beside serve): leave it; a later pass removes it once the
			// end has passed it uncommitted.
			if _, last, isRange := parseRange(name + ".json"); !isRange || last > l.End() {
				continue
			}
			if err := st.Delete(ctx, sk); err != nil {
				return res, fmt.Errorf("reconciling %s: %w", table, err)
			}
			res.Discarded++
			continue
		}
		if done[r.Key] {
			continue
		}
		done[r.Key] = true
		n, err := publishRange(ctx, st, l, r, cp)
		if err != nil {
			return res, fmt.Errorf("reconciling %s: %w", table, err)
		}
		res.Published++
		if n > 0 {
			res.Compactions++
		}
	}
	for _, s := range l.Superseded { // compactions whose objects are all published
		r, ok := outer(l, s)
		if !ok || done[r.Key] {
			continue
		}
		done[r.Key] = true
		if _, err := publishRange(ctx, st, l, r, cp); err != nil {
			return res, fmt.Errorf("reconciling %s: %w", table, err)
		}
		res.Compactions++
	}
	return res, nil
}

// publishRange publishes the committed range r with the manifests it
// supersedes, and says how many those were.
func publishRange(ctx context.Context, st ObjectStore, l Ledger, r Range, cp *crashpoints) (int, error) {
	m, err := ReadManifest(ctx, st, r.Key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil // cleaned by an earlier step of this pass
	}
	if err != nil {
		return 0, err
	}
	var inner []Manifest
	for _, s := range l.Superseded {
		if s.Key != r.Key && s.First >= r.First && s.Last <= r.Last {
			im, err := ReadManifest(ctx, st, s.Key)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return 0, err
			}
			inner = append(inner, im)
		}
	}
	return len(inner), publish(ctx, st, m, inner, cp)
}

// outer is the live range that covers superseded range s.
func outer(l Ledger, s Range) (Range, bool) {
	for _, r := range l.Ranges {
		if s.First >= r.First && s.Last <= r.Last {
			return r, true
		}
	}
	return Range{}, false
}

// objectRange is the "<first>-<last>" name of an object key.
func objectRange(key string) string {
	name := key[strings.LastIndexByte(key, '/')+1:]
	return strings.TrimSuffix(name, ".parquet")
}
