package archive

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// TableStatus summarises what the lake holds for one table.
type TableStatus struct {
	Table string `json:"table"`
	// Ranges is the number of committed ranges, First and Last the
	// sequences they span.
	Ranges   int         `json:"ranges"`
	First    uint64      `json:"firstSeq"`
	Last     uint64      `json:"lastSeq"`
	Gaps     [][2]uint64 `json:"gaps,omitempty"`
	Overlaps [][2]uint64 `json:"overlaps,omitempty"`
	// LastCommit is when the newest range was committed.
	LastCommit time.Time `json:"lastCommit,omitzero"`
	// Partitions maps dt=…/hour=… to committed objects and rows.
	Partitions []PartitionStatus `json:"partitions,omitempty"`
	Rows       int64             `json:"rows"`
	Bytes      int64             `json:"bytes"`
	// Orphans are objects under the table's data prefix that no manifest
	// lists: only lakes written before staging (or edited by hand) have
	// them, and glob readers would count them. `archive compact` deletes
	// those at or below the committed end.
	Orphans int `json:"orphans"`
	// Staged are objects under _staging/<table>/: a flush between its
	// upload and its publication, or the leftover of one that crashed
	// (invisible to glob readers; removed by the next start or compaction).
	Staged int `json:"staged"`
	// PendingErasures are deletion requests whose rewrite of this table
	// has started but not finished (docs/privacy.md).
	PendingErasures []string `json:"pendingErasures,omitempty"`
}

// PartitionStatus is one Hive partition of a table.
type PartitionStatus struct {
	Partition string `json:"partition"`
	Objects   int    `json:"objects"`
	Rows      int64  `json:"rows"`
	Bytes     int64  `json:"bytes"`
	// MinSeq and MaxSeq are the committed stream sequences that wrote it.
	MinSeq uint64 `json:"minSeq"`
	MaxSeq uint64 `json:"maxSeq"`
}

// Status reads every manifest of every table.
func Status(ctx context.Context, st ObjectStore) ([]TableStatus, error) {
	var out []TableStatus
	for _, table := range Tables() {
		s, err := tableStatus(ctx, st, table)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func tableStatus(ctx context.Context, st ObjectStore, table string) (TableStatus, error) {
	l, err := LoadLedger(ctx, st, table)
	if err != nil {
		return TableStatus{}, err
	}
	s := TableStatus{Table: table, Ranges: len(l.Ranges), Gaps: l.Gaps, Overlaps: l.Overlaps}
	if len(l.Ranges) > 0 {
		s.First, s.Last = l.Ranges[0].First, l.End()
	}
	parts := map[string]*PartitionStatus{}
	listed := map[string]bool{}
	for _, r := range l.Ranges {
		m, err := ReadManifest(ctx, st, r.Key)
		if err != nil {
			return TableStatus{}, err
		}
		s.LastCommit = m.Created
		for _, o := range m.Objects {
			listed[o.Key] = true
			p := parts[o.Partition]
			if p == nil {
				p = &PartitionStatus{Partition: o.Partition, MinSeq: m.FirstSeq}
				parts[o.Partition] = p
			}
			p.Objects++
			p.Rows += o.Rows
			p.Bytes += o.Bytes
			p.MinSeq, p.MaxSeq = min(p.MinSeq, m.FirstSeq), max(p.MaxSeq, m.LastSeq)
			s.Rows += o.Rows
			s.Bytes += o.Bytes
		}
	}
	keys, err := st.List(ctx, table+"/")
	if err != nil {
		return TableStatus{}, err
	}
	for _, k := range keys {
		if !listed[k] {
			s.Orphans++
		}
	}
	staged, err := st.List(ctx, StagingPrefix+table+"/")
	if err != nil {
		return TableStatus{}, err
	}
	s.Staged = len(staged)
	markers, err := loadMarkers(ctx, st, table)
	if err != nil {
		return TableStatus{}, err
	}
	for _, m := range markers {
		if m.Status != "done" {
			s.PendingErasures = append(s.PendingErasures, m.ID)
		}
	}
	for _, p := range parts {
		s.Partitions = append(s.Partitions, *p)
	}
	sort.Slice(s.Partitions, func(i, j int) bool { return s.Partitions[i].Partition < s.Partitions[j].Partition })
	return s, nil
}

// WriteStatus prints statuses as a table; with partitions, one line per
// Hive partition follows each table.
func WriteStatus(w io.Writer, statuses []TableStatus, partitions bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tRANGES\tSEQS\tROWS\tBYTES\tLAST COMMIT\tGAPS\tOVERLAPS\tORPHANS\tSTAGED\tERASING")
	for _, s := range statuses {
		last := "never"
		if !s.LastCommit.IsZero() {
			last = now.Sub(s.LastCommit).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d-%d\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%d\n", s.Table, s.Ranges, s.First, s.Last, s.Rows, s.Bytes,
			last, spans(s.Gaps), spans(s.Overlaps), s.Orphans, s.Staged, len(s.PendingErasures))
		if partitions {
			for _, p := range s.Partitions {
				fmt.Fprintf(tw, "  %s\t%d obj\t%d-%d\t%d\t%d\t\t\t\t\t\t\n", p.Partition, p.Objects, p.MinSeq, p.MaxSeq, p.Rows, p.Bytes)
			}
		}
	}
	return tw.Flush()
}

func spans(s [][2]uint64) string {
	if len(s) == 0 {
		return "-"
	}
	parts := make([]string, len(s))
	for i, g := range s {
		parts[i] = fmt.Sprintf("%d-%d", g[0], g[1])
	}
	return strings.Join(parts, ",")
}
