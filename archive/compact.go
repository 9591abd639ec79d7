package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
)

// CompactOptions bounds a compaction run.
type CompactOptions struct {
	// Before: only ranges committed before this instant are merged.
	Before time.Time
	// TargetBytes bounds the Parquet bytes of one merged range.
	TargetBytes int64
	// RowGroupRows is the row group size of the merged objects.
	RowGroupRows int64
}

// CompactResult reports what a compaction did.
type CompactResult struct {
	Table         string `json:"table"`
	Merged        int    `json:"mergedRanges"`
	Into          int    `json:"newRanges"`
	DeletedObject int    `json:"deletedObjects"`
	// DeletedOrphans counts objects of crashed flushes removed: objects no
	// manifest lists whose range ends at or below the committed end (a
	// live archiver's uncommitted upload is always above it).
	DeletedOrphans int `json:"deletedOrphans"`
	// Finished counts compactions an earlier, stopped run left past their
	// commit point that this run completed.
	Finished int `json:"finishedCompactions"`
}

// Compact merges runs of contiguous committed ranges of table (at low
// traffic, one per flush_interval) into wider ranges with one object per
// partition. It is crash-safe and may run beside a live archiver: the
// merged objects are staged first, then the merged manifest is written,
// which supersedes the ranges it covers (readers and the archiver ignore a
// range inside a wider one); then, partition by partition, the old objects
// are deleted and the merged one published, so that a glob reader never
// sees both generations; the old manifests go last. A run first finishes
// whatever an earlier, stopped run left (reconcile).
func Compact(ctx context.Context, st ObjectStore, table string, opt CompactOptions) (CompactResult, error) {
	res := CompactResult{Table: table}
	var cp crashpoints
	rec, err := reconcile(ctx, st, table, &cp)
	if err != nil {
		return res, err
	}
	res.Finished = rec.Compactions
	l, err := LoadLedger(ctx, st, table)
	if err != nil {
		return res, err
	}
	groups, err := compactionGroups(ctx, st, l, opt)
	if err != nil {
		return res, err
	}
	// Erased users' rows stay out of the merged objects; an erasure
	// requested while this run merges is applied again after it.
	markers, err := loadMarkers(ctx, st, table)
	if err != nil {
		return res, err
	}
	erased := markerErased(markers)
	for _, g := range groups {
		man, err := mergeGroup(ctx, st, table, g, opt, erased)
		if err != nil {
			return res, err
		}
		cp.at("compact-before-publish")
		if err := publish(ctx, st, man, g, &cp); err != nil {
			return res, fmt.Errorf("compacting: %w", err)
		}
		res.Merged += len(g)
		res.Into++
		for _, m := range g {
			res.DeletedObject += len(m.Objects)
		}
	}
	if after, err := loadMarkers(ctx, st, table); err != nil {
		return res, err
	} else if len(after) != len(markers) && len(groups) > 0 {
		if err := eraseWith(ctx, st, table, markerErased(after), opt.RowGroupRows); err != nil {
			return res, fmt.Errorf("compacting: erasures requested meanwhile: %w", err)
		}
	}
	return res, deleteOrphans(ctx, st, table, l.End(), &res)
}

// eraseWith rewrites table's committed objects without the rows erased
// selects.
func eraseWith(ctx context.Context, st ObjectStore, table string, erased func(string, time.Time) bool, rowGroupRows int64) error {
	var err error
	switch table {
	case TableEvents:
		_, _, err = eraseCommitted(ctx, st, table, erasedBy(eventOwner, erased), rowGroupRows, nil)
	case TableSessions:
		_, _, err = eraseCommitted(ctx, st, table, erasedBy(sessionOwner, erased), rowGroupRows, nil)
	case TableFailed:
		_, _, err = eraseCommitted(ctx, st, table, erasedBy(failedOwner, erased), rowGroupRows, nil)
	}
	return err
}

func deleteOrphans(ctx context.Context, st ObjectStore, table string, end uint64, res *CompactResult) error {
	listed := map[string]bool{}
	objs, err := CommittedObjects(ctx, st, table)
	if err != nil {
		return err
	}
	for _, o := range objs {
		listed[o.Key] = true
	}
	keys, err := st.List(ctx, table+"/")
	if err != nil {
		return err
	}
	for _, k := range keys {
		_, last, ok := parseRange(strings.TrimSuffix(k, ".parquet") + ".json")
		if listed[k] || !ok || last > end {
			continue
		}
		if err := st.Delete(ctx, k); err != nil {
			return fmt.Errorf("compacting: %w", err)
		}
		res.DeletedOrphans++
	}
	return nil
}

// compactionGroups cuts the old, contiguous ranges into groups of at least
// two whose objects add up to at most TargetBytes.
func compactionGroups(ctx context.Context, st ObjectStore, l Ledger, opt CompactOptions) ([][]Manifest, error) {
	var groups [][]Manifest
	var cur []Manifest
	var size int64
	closeGroup := func() {
		if len(cur) > 1 {
			groups = append(groups, cur)
		}
		cur, size = nil, 0
	}
	for _, r := range l.Ranges {
		m, err := ReadManifest(ctx, st, r.Key)
		if err != nil {
			return nil, err
		}
		var b int64
		for _, o := range m.Objects {
			b += o.Bytes
		}
		switch {
		case !m.Created.Before(opt.Before):
			closeGroup()
			return groups, nil // newer ranges are left for later runs
		case len(cur) > 0 && (cur[len(cur)-1].LastSeq+1 != m.FirstSeq || size+b > opt.TargetBytes):
			closeGroup()
		}
		cur = append(cur, m)
		size += b
	}
	closeGroup()
	return groups, nil
}

func mergeGroup(ctx context.Context, st ObjectStore, table string, g []Manifest, opt CompactOptions,
	erased func(string, time.Time) bool) (Manifest, error) {
	switch table {
	case TableEvents:
		return mergeTyped(ctx, st, table, g, opt, erasedBy(eventOwner, erased))
	case TableSessions:
		return mergeTyped(ctx, st, table, g, opt, erasedBy(sessionOwner, erased))
	case TableFailed:
		return mergeTyped(ctx, st, table, g, opt, erasedBy(failedOwner, erased))
	}
	return Manifest{}, fmt.Errorf("compacting: unknown table %q", table)
}

func mergeTyped[T any](ctx context.Context, st ObjectStore, table string, g []Manifest, opt CompactOptions, drop func(*T) bool) (Manifest, error) {
	first, last := g[0].FirstSeq, g[len(g)-1].LastSeq
	parts := map[string][]T{}
	messages := 0
	for _, m := range g {
		messages += m.Messages
		for _, o := range m.Objects {
			data, err := ReadObject(ctx, st, o.Key)
			if err != nil {
				return Manifest{}, fmt.Errorf("compacting: %w", err)
			}
			rows, err := parquet.Read[T](bytes.NewReader(data), int64(len(data)))
			if err != nil {
				return Manifest{}, fmt.Errorf("compacting: reading %s: %w", o.Key, err)
			}
			for i := range rows {
				if !drop(&rows[i]) {
					parts[o.Partition] = append(parts[o.Partition], rows[i])
				}
			}
		}
	}
	names := make([]string, 0, len(parts))
	for p := range parts {
		names = append(names, p)
	}
	sort.Strings(names)
	man := Manifest{Version: 1, Table: table, Stream: tableStreams[table], FirstSeq: first, LastSeq: last,
		Messages: messages, Created: time.Now().UTC()}
	for _, p := range names {
		key := objectKey(table, p, first, last)
		data, err := encodeParquet(parts[p], opt.RowGroupRows, first, last)
		if err != nil {
			return Manifest{}, fmt.Errorf("compacting: encoding %s: %w", key, err)
		}
		if err := st.Put(ctx, stagingKey(key), data); err != nil {
			return Manifest{}, fmt.Errorf("compacting: %w", err)
		}
		n := int64(len(parts[p]))
		man.Objects = append(man.Objects, Object{Key: key, Partition: p, Rows: n, Bytes: int64(len(data))})
		man.Rows += n
	}
	body, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("compacting: encoding manifest: %w", err)
	}
	if err := st.Put(ctx, manifestKey(table, first, last), body); err != nil { // the commit point
		return Manifest{}, fmt.Errorf("compacting: %w", err)
	}
	return man, nil
}
