package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ManifestPrefix is where commit records live: _manifests/<table>/.
const ManifestPrefix = "_manifests/"

// Manifest commits one range of stream sequences of one table. Only objects
// listed in a manifest are part of the lake; the manifest is written after
// every object it lists.
type Manifest struct {
	Version  int       `json:"version"`
	Table    string    `json:"table"`
	Stream   string    `json:"stream"`
	FirstSeq uint64    `json:"firstSeq"`
	LastSeq  uint64    `json:"lastSeq"`
	Messages int       `json:"messages"`
	Rows     int64     `json:"rows"`
	Objects  []Object  `json:"objects"`
	Created  time.Time `json:"created"`
}

// Object is one Parquet object of a committed range.
type Object struct {
	Key       string `json:"key"`
	Partition string `json:"partition"`
	Rows      int64  `json:"rows"`
	Bytes     int64  `json:"bytes"`
}

// rangeName is the zero-padded "<first>-<last>" that names the objects and
// the manifest of a range, so keys sort by sequence and repeat exactly when
// a range is written again.
func rangeName(first, last uint64) string {
	return fmt.Sprintf("%020d-%020d", first, last)
}

func manifestKey(table string, first, last uint64) string {
	return ManifestPrefix + table + "/" + rangeName(first, last) + ".json"
}

func objectKey(table, partition string, first, last uint64) string {
	return table + "/" + partition + "/" + rangeName(first, last) + ".parquet"
}

// parseRange reads "<first>-<last>" from a manifest key.
func parseRange(key string) (first, last uint64, ok bool) {
	name := key[strings.LastIndexByte(key, '/')+1:]
	name, found := strings.CutSuffix(name, ".json")
	a, b, cut := strings.Cut(name, "-")
	if !found || !cut {
		return 0, 0, false
	}
	first, err1 := strconv.ParseUint(a, 10, 64)
	last, err2 := strconv.ParseUint(b, 10, 64)
	return first, last, err1 == nil && err2 == nil && first <= last
}

// Range is a committed [First, Last] range of stream sequences.
type Range struct {
	First, Last uint64
	Key         string
}

// Ledger is what the manifests of one table say: the committed ranges in
// order, and any gaps or overlaps between them.
type Ledger struct {
	Table  string
	Ranges []Range
	// Superseded are ranges inside a wider range (left by a compaction
	// that stopped before deleting them); readers ignore them.
	Superseded []Range
	Gaps       [][2]uint64 // missing [from, to] between consecutive ranges
	Overlaps   [][2]uint64 // sequences covered by two ranges
}

// End is the highest committed sequence, 0 when nothing is committed.
func (l Ledger) End() uint64 {
	if len(l.Ranges) == 0 {
		return 0
	}
	return l.Ranges[len(l.Ranges)-1].Last
}

// LoadLedger lists the manifests of table.
func LoadLedger(ctx context.Context, st ObjectStore, table string) (Ledger, error) {
	keys, err := st.List(ctx, ManifestPrefix+table+"/")
	if err != nil {
		return Ledger{}, fmt.Errorf("loading %s manifests: %w", table, err)
	}
	l := Ledger{Table: table}
	for _, k := range keys {
		if first, last, ok := parseRange(k); ok {
			l.Ranges = append(l.Ranges, Range{First: first, Last: last, Key: k})
		}
	}
	sort.Slice(l.Ranges, func(i, j int) bool {
		a, b := l.Ranges[i], l.Ranges[j]
		return a.First < b.First || a.First == b.First && a.Last < b.Last
	})
	// Sorted by first ascending, last ascending: drop every range that a
	// later one with the same first, or an earlier one, covers.
	kept := l.Ranges[:0:0]
	for _, r := range l.Ranges {
		for len(kept) > 0 && kept[len(kept)-1].First == r.First {
			l.Superseded = append(l.Superseded, kept[len(kept)-1])
			kept = kept[:len(kept)-1]
		}
		if len(kept) > 0 && r.Last <= kept[len(kept)-1].Last && r.First >= kept[len(kept)-1].First {
			l.Superseded = append(l.Superseded, r)
			continue
		}
		kept = append(kept, r)
	}
	l.Ranges = kept
	var end uint64
	for i, r := range l.Ranges {
		switch {
		case i > 0 && r.First <= end:
			l.Overlaps = append(l.Overlaps, [2]uint64{r.First, min(end, r.Last)})
		case i > 0 && r.First > end+1:
			l.Gaps = append(l.Gaps, [2]uint64{end + 1, r.First - 1})
		}
		end = max(end, r.Last)
	}
	return l, nil
}

// ReadManifest reads and parses one manifest.
func ReadManifest(ctx context.Context, st ObjectStore, key string) (Manifest, error) {
	b, err := st.Get(ctx, key)
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("parsing manifest %s: %w", key, err)
	}
	return m, nil
}

// CommittedObjects lists every object of table that a manifest commits, in
// sequence order: what a reader of the lake must read, and nothing else.
func CommittedObjects(ctx context.Context, st ObjectStore, table string) ([]Object, error) {
	l, err := LoadLedger(ctx, st, table)
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, r := range l.Ranges {
		m, err := ReadManifest(ctx, st, r.Key)
		if err != nil {
			return nil, err
		}
		out = append(out, m.Objects...)
	}
	return out, nil
}
