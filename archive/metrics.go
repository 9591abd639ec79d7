package archive

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	lagMessages   *prometheus.GaugeVec
	lagSeconds    *prometheus.GaugeVec
	committedSeq  *prometheus.GaugeVec
	behind        *prometheus.GaugeVec
	ranges        *prometheus.CounterVec
	objects       *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	rows          *prometheus.CounterVec
	uploadSeconds *prometheus.HistogramVec
	uploadErrors  *prometheus.CounterVec
	duplicates    *prometheus.CounterVec
	gaps          *prometheus.CounterVec
	regression    *prometheus.GaugeVec
	undecodable   *prometheus.CounterVec
	poisonMoved   *prometheus.CounterVec
	poisonDropped *prometheus.CounterVec
	stalled       *prometheus.GaugeVec
	erasedRows    *prometheus.CounterVec
	fenced        *prometheus.CounterVec
	restarts      *prometheus.CounterVec
	holesFilled   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "clickpipe", "archive"
	table := []string{"table"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, table)
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, table)
	}
	m := &metrics{
		lagMessages:  gauge("lag_messages", "Stream messages not yet committed to the lake."),
		lagSeconds:   gauge("lag_seconds", "Age of the oldest stream message not yet committed to the lake."),
		committedSeq: gauge("committed_sequence", "Highest stream sequence committed to the lake."),
		behind:       gauge("behind", "1 while uploads to the object store are failing and being retried."),
		ranges:       counter("committed_ranges_total", "Sequence ranges committed by a manifest."),
		objects:      counter("objects_written_total", "Parquet objects and manifests written."),
		bytes:        counter("written_bytes_total", "Bytes written to the object store."),
		rows:         counter("rows_written_total", "Rows written to committed Parquet objects."),
		uploadSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "upload_duration_seconds", Help: "Duration of one object upload attempt.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, table),
		uploadErrors: counter("upload_errors_total", "Failed upload attempts (retried)."),
		duplicates:   counter("duplicates_skipped_total", "Events not written because an earlier occurrence of (source, messageId) exists."),
		gaps:         counter("sequence_gaps_total", "Stream sequences that were expected but never delivered (expired or deleted)."),
		undecodable:  counter("undecodable_total", "Stream items that cannot be applied to their table (undecodable, or ids that cannot be keys)."),
		poisonMoved:  counter("poison_moved_total", "Items that cannot be applied, written to the failed stream (and so the failed table) with their position."),
		poisonDropped: counter("poison_dropped_total",
			"Items that cannot be applied and could not be written to the failed stream either (failed-table poison, a full failed stream); logged."),
		stalled:    gauge("stalled", "1 while the table holds or awaits messages but has not committed for archive.stall_after."),
		erasedRows: counter("erased_rows_total", "Rows of erased users removed from the lake: left out of new ranges or rewritten out of committed objects."),
		fenced: counter("fenced_commits_total",
			"Manifest writes withheld because this node could not prove it holds the table's lake lease (cluster mode)."),
		restarts: counter("restarts_total",
			"Table writers started again after a failure (stream or consumer unreachable, fetches failing); each restarts from the committed end."),
		holesFilled: counter("holes_filled_total",
			"Sequences missing from an open range (deliveries lost in flight) read straight from the stream instead of awaiting redelivery."),
		regression: gauge("sequence_regression", "1 while the stream is behind the lake's committed end (the stream lost data); the table is not consumed."),
	}
	if reg != nil {
		reg.MustRegister(m.lagMessages, m.lagSeconds, m.committedSeq, m.behind, m.ranges, m.objects, m.bytes,
			m.rows, m.uploadSeconds, m.uploadErrors, m.duplicates, m.gaps, m.undecodable, m.regression,
			m.poisonMoved, m.poisonDropped, m.stalled, m.erasedRows, m.fenced, m.restarts, m.holesFilled)
	}
	return m
}
